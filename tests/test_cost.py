"""Prices against the shipped configs/providers.yaml."""

from __future__ import annotations

import pytest

from actors.config import load_config
from actors.cost import cost_usd, input_cost_per_token, output_cost_per_token, worst_case_cost


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_gpt4_turbo_example(cfg):
    spec = cfg.provider("gpt-4-turbo")
    assert (spec.input_cost_per_mtok, spec.output_cost_per_mtok) == (10.0, 30.0)
    assert cost_usd(spec, 1000, 500) == pytest.approx(0.025)


def test_claude_prices(cfg):
    spec = cfg.provider("claude")  # 3 / 15 per 1M
    assert cost_usd(spec, 1_000_000, 0) == pytest.approx(3.0)
    assert cost_usd(spec, 0, 1_000_000) == pytest.approx(15.0)
    assert cost_usd(spec, 2000, 1000) == pytest.approx(0.006 + 0.015)


def test_zero_usage_is_free(cfg):
    for spec in cfg.providers:
        assert cost_usd(spec, 0, 0) == 0.0


def test_per_token_helpers(cfg):
    spec = cfg.provider("gemini")  # 1.25 / 10 per 1M
    assert input_cost_per_token(spec) == pytest.approx(1.25e-6)
    assert output_cost_per_token(spec) == pytest.approx(1e-5)
    assert cost_usd(spec, 7, 3) == pytest.approx(7 * 1.25e-6 + 3 * 1e-5)


def test_worst_case_uses_max_tokens_or_provider_cap(cfg):
    spec = cfg.provider("gpt-4-turbo")
    assert worst_case_cost(spec, 1000, 500) == pytest.approx(0.025)
    # default: the provider's max_output_tokens (4096)
    assert worst_case_cost(spec, 1000) == pytest.approx(0.01 + 4096 * 30 / 1e6)


def test_worst_case_bounds_any_actual_usage(cfg):
    for spec in cfg.providers:
        bound = worst_case_cost(spec, 2000, 800)
        for out in (0, 1, 400, 800):
            assert cost_usd(spec, 2000, out) <= bound + 1e-15


def test_negative_tokens_rejected(cfg):
    spec = cfg.provider("claude")
    with pytest.raises(ValueError, match="input_tokens"):
        cost_usd(spec, -1, 0)
    with pytest.raises(ValueError, match="output_tokens"):
        worst_case_cost(spec, 10, -5)
