"""The native HTTP API's bodies: market data in, a routed `RouteRequest` out, results back.

Market data becomes a prompt through `actors.routing.analysis` — the same code the notebook API and
the backtest use — so an HTTP signal and a backtest signal for one bar are the same request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from actors.config import Config
from actors.core.contexts import check_context
from actors.policy.policies import POLICIES
from actors.routing.analysis import analysis_request, context_from_bars
from actors.routing.route import ChoiceOptions, RouteRequest, RouteResult
from actors.stores.response_cache import CacheMode
from prompts import MarketContext, Position, RegimeRules, Timeframe
from serve.cache_option import CACHE_HEADER
from serve.errors import REPLAYED_HEADER, SIMULATED_HEADER, ApiError, bad_request
from serve.openai_compat import STRICT

MAX_BARS = 20_000


class Bar(BaseModel):
    """One OHLCV bar."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    timestamp: datetime = Field(strict=False, description="ISO 8601; a date alone is midnight.")
    open: float
    high: float
    low: float
    close: float
    volume: float = Field(ge=0)


class _Routed(ChoiceOptions):
    """Routing options every native request may give."""

    model_config = STRICT

    policy: str | None = Field(None, description="accuracy-first, cost-aware, latency-aware.")
    provider: str | None = Field(None, description="Pin one provider.")
    fallbacks: list[str] | None = Field(None, description="Provider order to try.")
    max_tokens: int | None = Field(None, gt=0)
    timeout: float | None = Field(None, gt=0, description="Seconds until the deadline.")
    request_id: str | None = Field(None, min_length=1, max_length=128)
    priority: Literal["live", "batch"] = "live"
    cache: CacheMode | None = Field(None, description="Response cache: read, write, both, only "
                                    "(default off; also the x-router-cache header).")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra record context.")


    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        return check_context(v)


class MarketInput(_Routed):
    """A ready `MarketContext`, or OHLCV bars with symbol and timeframe to compute one."""

    context: MarketContext | None = None
    bars: list[Bar] | None = Field(None, min_length=1, max_length=MAX_BARS)
    symbol: str | None = Field(None, min_length=1, max_length=64)
    timeframe: Timeframe | None = None
    as_of: datetime | None = Field(None, strict=False,
                                   description="Bar to analyse; default the last.")

    @model_validator(mode="after")
    def _one_source(self) -> MarketInput:
        if (self.context is None) == (self.bars is None):
            raise ValueError("give exactly one of 'context' or 'bars'")
        if self.bars is not None and (not self.symbol or not self.timeframe):
            raise ValueError("'bars' needs 'symbol' and 'timeframe'")
        return self


class AnalyzeRequest(MarketInput):
    """`POST /v1/analyze` → a TradeSignal."""

    task: Literal["analysis", "pattern"] = "analysis"


class RiskRequest(MarketInput):
    """`POST /v1/risk`: a trade proposal (position) in its market context → a RiskAssessment."""

    position: Position = Field(validation_alias=AliasChoices("position", "proposal"))


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: the realized outcome of a routed request."""

    model_config = STRICT

    request_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0, le=1, description="1.0 = the call was right, 0.0 = wrong.")


def check_route(req: _Routed, config: Config, token_limit: int) -> None:
    """Names and limits the router would refuse, refused here with the right `param`."""
    if req.policy is not None and req.policy not in POLICIES:
        raise bad_request(f"unknown policy {req.policy!r}; choose one of "
                          f"{', '.join(POLICIES)}", "policy")
    for param, name in [("provider", req.provider),
                        *((f"fallbacks[{i}]", n) for i, n in enumerate(req.fallbacks or []))]:
        if name is not None and name not in config.names:
            raise bad_request(f"unknown provider {name!r}; configured: "
                              f"{', '.join(config.names)}", param)
    if req.max_tokens is not None and req.max_tokens > token_limit:
        raise bad_request(f"max_tokens {req.max_tokens} is above the limit {token_limit}",
                          "max_tokens", "max_tokens_too_large")


def market_context(req: MarketInput, rules: RegimeRules,
                   position: Position | None = None) -> MarketContext:
    """The request's context (CPU work for bars: call it off the event loop); bars get the
    configured regime rule."""
    if req.context is not None:
        return req.context if position is None else req.context.with_position(position)
    assert req.bars is not None and req.symbol and req.timeframe
    frame = pd.DataFrame([b.model_dump() for b in req.bars])
    try:
        return context_from_bars(frame, req.symbol, req.timeframe, rules=rules, as_of=req.as_of,
                                 position=position)
    except (ValueError, TypeError) as exc:  # DataError, too few bars, bad as_of
        raise bad_request(f"bars: {exc}", "bars", "invalid_bars") from None


def route_request(req: MarketInput, task: str, config: Config, timeout: float | None,
                  position: Position | None = None) -> RouteRequest:
    ctx = market_context(req, config.regime, position)
    try:
        out = analysis_request(
            ctx, task, config, policy=req.policy, provider=req.provider, fallbacks=req.fallbacks,
            max_tokens=req.max_tokens, timeout=timeout, request_id=req.request_id,
            priority=req.priority, quality_target=req.quality_target,
            outcome_value_usd=req.outcome_value_usd, explore=req.explore, cache=req.cache)
    except ValueError as exc:
        raise bad_request(str(exc), "context") from None
    if req.tags:  # analysis_request's own `context=` clashes with its first parameter's name
        tags = {**out.context, **req.tags, "task": out.context["task"]}
        out = out.model_copy(update={"context": tags})
    return out


def result_body(r: RouteResult, key: str) -> dict[str, Any]:
    """`{request_id, <key>: parsed output, provider, model, usage, cost_usd, latency_s, trace}`."""
    if r.parsed is None:
        raise ApiError(502, "invalid_response", "the provider's answer carried no structured "
                       "output", None, "invalid_response")
    return {"request_id": r.request_id, key: r.parsed, "provider": r.provider, "model": r.model,
            "usage": {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens},
            "cost_usd": r.cost_usd, "latency_s": r.latency_s,
            "trace": r.trace.model_dump(mode="json")}


def trace_headers(r: RouteResult) -> dict[str, str]:
    """The routing decision in headers, for clients that only read headers."""
    t = r.trace
    out = {"x-router-request-id": r.request_id, "x-router-provider": r.provider,
           "x-router-model": r.model, "x-router-policy": t.policy,
           "x-router-attempts": str(len(t.attempts)), "x-router-cost-usd": f"{r.cost_usd:.8f}",
           "x-router-latency-ms": f"{r.latency_s * 1000:.1f}"}
    failed = ",".join(dict.fromkeys(a.provider for a in t.attempts if not a.ok))
    if failed:
        out["x-router-failed"] = failed
    if t.simulated:  # a made-up answer always says so
        out[SIMULATED_HEADER] = "true"
    if t.replayed:
        out[REPLAYED_HEADER] = "true"
    if t.cached:
        out[CACHE_HEADER] = "hit"
        out["x-router-saved-usd"] = f"{t.saved_usd:.8f}"
    return out
