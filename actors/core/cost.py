"""Prices: the one place token counts become dollars (prices are USD per 1M tokens).

Usage is priced the way the vendors bill it: prompt tokens read from the vendor's cache at
`cached_input_cost_per_mtok`, tokens written to it at `cache_write_cost_per_mtok`, the rest
of the prompt at `input_cost_per_mtok`; output (thinking included) at `output_cost_per_mtok`.
"""

from __future__ import annotations

from actors.config import ProviderSpec

PER = 1_000_000


def _check(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def cached_input_price(spec: ProviderSpec) -> float:
    """USD per 1M cache-read tokens: the configured discount, else the input price."""
    p = spec.cached_input_cost_per_mtok
    return spec.input_cost_per_mtok if p is None else p


def cache_write_price(spec: ProviderSpec) -> float:
    """USD per 1M cache-write tokens: the configured price, else the input price."""
    p = spec.cache_write_cost_per_mtok
    return spec.input_cost_per_mtok if p is None else p


def cost_usd(
    spec: ProviderSpec,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float:
    """What an attempt with this usage costs at the configured prices.

    `input_tokens` is the whole prompt, the cached and cache-written parts included (how
    OpenAI and Gemini report it; the Anthropic client adds its separate counts up).
    """
    _check(input_tokens=input_tokens, output_tokens=output_tokens,
           cached_input_tokens=cached_input_tokens, cache_write_tokens=cache_write_tokens)
    if cached_input_tokens + cache_write_tokens > input_tokens:
        raise ValueError(f"cached ({cached_input_tokens}) + cache-write ({cache_write_tokens}) "
                         f"tokens exceed input_tokens ({input_tokens})")
    # One division at the end keeps e.g. 1000×10 + 500×30 exact before scaling.
    total = (input_tokens - cached_input_tokens - cache_write_tokens) * spec.input_cost_per_mtok
    total += output_tokens * spec.output_cost_per_mtok
    if cached_input_tokens:
        total += cached_input_tokens * cached_input_price(spec)
    if cache_write_tokens:
        total += cache_write_tokens * cache_write_price(spec)
    return total / PER


def worst_case_cost(spec: ProviderSpec, prompt_tokens: int, max_tokens: int | None = None,
                    choices: int = 1) -> float:
    """Upper bound to reserve against a budget before sending: the whole prompt at the
    dearest input price (a cache write can cost more than plain input) plus the longest
    completion allowed (`max_tokens`, else the provider's `max_output_tokens`) for each of
    the `choices` (n) answers."""
    out = (spec.max_output_tokens if max_tokens is None else max_tokens) * choices
    _check(prompt_tokens=prompt_tokens, output_tokens=out)
    dearest = max(spec.input_cost_per_mtok, cache_write_price(spec))
    return (prompt_tokens * dearest + out * spec.output_cost_per_mtok) / PER
