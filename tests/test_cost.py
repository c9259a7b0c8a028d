"""Prices against the shipped configs/providers.yaml."""

from __future__ import annotations

import pytest

from actors.config import load_config
from actors.core.cost import cost_usd, worst_case_cost


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


def test_cost_is_per_million_tokens(cfg):
    spec = cfg.provider("gemini")  # 1.25 / 10 per 1M
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
            # a prompt written to the cache costs more than plain input on Claude
            assert cost_usd(spec, 2000, out, cache_write_tokens=2000) <= bound + 1e-15


def test_cached_input_at_the_vendors_discounted_rates(cfg):
    claude = cfg.provider("claude")  # 3.00 input, reads 0.30, 5-minute writes 3.75
    assert cost_usd(claude, 3000, 100, cached_input_tokens=2000, cache_write_tokens=500) == \
        pytest.approx((500 * 3.0 + 2000 * 0.30 + 500 * 3.75 + 100 * 15.0) / 1e6)
    gemini = cfg.provider("gemini")  # 1.25 input, cached 0.125
    assert cost_usd(gemini, 4096, 0, cached_input_tokens=4096) == pytest.approx(4096 * 0.125 / 1e6)
    gpt = cfg.provider("gpt-4-turbo")  # no prompt-cache discount on gpt-4-turbo
    assert cost_usd(gpt, 2000, 0, cached_input_tokens=1024) == cost_usd(gpt, 2000, 0)
    unset = gpt.model_copy(update={"cached_input_cost_per_mtok": None})
    assert cost_usd(unset, 2000, 0, cached_input_tokens=1024) == cost_usd(gpt, 2000, 0)


def test_cached_tokens_cannot_exceed_the_prompt(cfg):
    with pytest.raises(ValueError, match="exceed input_tokens"):
        cost_usd(cfg.provider("claude"), 100, 0, cached_input_tokens=80, cache_write_tokens=30)


def test_negative_tokens_rejected(cfg):
    spec = cfg.provider("claude")
    with pytest.raises(ValueError, match="input_tokens"):
        cost_usd(spec, -1, 0)
    with pytest.raises(ValueError, match="output_tokens"):
        worst_case_cost(spec, 10, -5)
