"""Prices: the one place token counts become dollars (prices are USD per 1M tokens)."""

from __future__ import annotations

from actors.config import ProviderSpec

PER = 1_000_000


def _check(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def input_cost_per_token(spec: ProviderSpec) -> float:
    return spec.input_cost_per_mtok / PER


def output_cost_per_token(spec: ProviderSpec) -> float:
    return spec.output_cost_per_mtok / PER


def cost_usd(spec: ProviderSpec, input_tokens: int, output_tokens: int) -> float:
    """What an attempt with this usage costs at the configured list prices."""
    _check(input_tokens=input_tokens, output_tokens=output_tokens)
    # One division at the end keeps e.g. 1000×10 + 500×30 exact before scaling.
    return (
        input_tokens * spec.input_cost_per_mtok + output_tokens * spec.output_cost_per_mtok
    ) / PER


def worst_case_cost(spec: ProviderSpec, prompt_tokens: int, max_tokens: int | None = None) -> float:
    """Upper bound to reserve against a budget before sending: the whole prompt plus the
    longest completion allowed (`max_tokens`, else the provider's `max_output_tokens`)."""
    out = spec.max_output_tokens if max_tokens is None else max_tokens
    return cost_usd(spec, prompt_tokens, out)
