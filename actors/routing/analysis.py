"""From market data to a routed request: the one place HTTP, notebooks and backtests turn a
`MarketContext` (or OHLCV bars) into a `RouteRequest` with validated structured output."""

from __future__ import annotations

from typing import Any

import pandas as pd

from actors.config import Config
from actors.routing.route import RouteRequest
from prompts import MarketContext, Position, RegimeRules, build_context, get_task, render_prompt


def largest_window(config: Config) -> int:
    """Trim prompts for the biggest context window; smaller providers are then skipped by
    the router (with a reason in the trace) rather than silently truncated."""
    return max(p.max_input_tokens for p in config.providers if p.enabled)


def analysis_request(
    market: MarketContext,
    task: str,
    config: Config,
    **route: Any,
) -> RouteRequest:
    """A RouteRequest asking `task` about `market`, with the output model to validate.

    `route` takes RouteRequest fields (policy, provider, fallbacks, max_tokens, timeout,
    request_id). The record context gets task, regime and timeframe so the tracker keeps
    per-context figures.
    """
    t = get_task(task)
    prompt = render_prompt(market, t, max_input_tokens=largest_window(config))
    tags = {**market.tags(), **(route.pop("context", None) or {}), "task": t.name}
    return RouteRequest(
        messages=prompt.messages(), context=tags, output=t.output_kind,
        **{k: v for k, v in route.items() if v is not None},
    )


def context_from_bars(
    bars: pd.DataFrame,
    symbol: str,
    timeframe: str,
    *,
    rules: RegimeRules,
    as_of: Any = None,
    position: Position | dict[str, Any] | None = None,
) -> MarketContext:
    """The context of `bars` at `as_of`, its regime by the configured rule (`config.regime`:
    required, so no caller can silently fall back to the defaults)."""
    return build_context(bars, symbol, timeframe, as_of=as_of, position=position, rules=rules)
