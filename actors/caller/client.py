"""`RouterClient`: the Python API's client, as `connect()` returns it (actors/api.py).

Requests here (complete, acomplete, stream, analyze, aroute); reports and state in
actors/caller/client_reports.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pandas as pd
import ray
from pydantic import BaseModel

from actors.caller import lost_router
from actors.caller.client_reports import Reports
from actors.caller.outputs import OutputLike, as_model, builtin_model, request_fields
from actors.caller.route_streams import RouteStream, SyncRouteStream
from actors.caller.router_recovery import ROUTER_WAIT_S, RouterRecovery
from actors.clients.base import Message
from actors.config import Config
from actors.routing.route import RouteRequest, RouteResult
from actors.rpc.channel import ChannelBroken, ChannelPool
from actors.shells import ray_calls
from actors.shells.system import Handles
from actors.stores.response_cache import CacheMode

MessagesLike = str | list[Message] | list[dict[str, str]]


def as_messages(messages: MessagesLike) -> list[Message]:
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]


def with_id(req: RouteRequest) -> RouteRequest:
    """The request with an id of its own (made up when the caller gave none, and marked
    so: the router need not look a new id up), so a lost router's placeholder row and any
    replay name it."""
    if req.request_id is None:
        return req.with_made_up_id()
    return req


class RouterClient(Reports):
    """Thin façade over the actors; every call goes through the one router."""

    def __init__(self, handles: Handles, config: Config) -> None:
        self._h = handles
        self.config = config
        self._router_channel = ChannelPool(lambda: self._h.router, "router")
        self._router_recovery = RouterRecovery(lambda: self._h.router.ready.remote(),
                                               (ray.exceptions.RayActorError,))

    def _request(self, messages: MessagesLike, output: OutputLike = "text",
                 **kw: Any) -> tuple[RouteRequest, type[BaseModel] | None]:
        """The RouteRequest and the model class to build `parsed` with (None: as sent)."""
        if "fresh_id" in kw:  # it skips the idempotency lookup: only `with_id` may set it
            raise TypeError("fresh_id is set by the client for ids it makes up; "
                            "choose an id with request_id")
        fields, cls = request_fields(output, kw)
        req = RouteRequest(messages=as_messages(messages), **fields,
                           **{k: v for k, v in kw.items() if v is not None})
        return req, cls

    def complete(
        self,
        messages: MessagesLike,
        *,
        policy: str | None = None,
        provider: str | None = None,
        fallbacks: list[str] | None = None,
        context: dict[str, str] | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        temperature: float | None = None,
        output: OutputLike = "text",
        request_id: str | None = None,
        quality_target: float | None = None,
        outcome_value_usd: float | None = None,
        explore: bool | None = None,
        user: str | None = None,
        cache: CacheMode | None = None,
        **params: Any,
    ) -> RouteResult:
        """Route one request; returns text, usage, cost and the routing trace.

        `output`: "text", "trade_signal", "risk_assessment" or a pydantic model class —
        then `result.parsed` is a validated instance of it (an answer that does not
        validate falls back to the next provider). `params`: any completion parameter —
        top_p, stop, seed, presence_penalty, frequency_penalty, logprobs, top_logprobs, n,
        tools, tool_choice, parallel_tool_calls, response_format, thinking_budget (OpenAI's
        names and shapes); a provider that cannot honour one is skipped (the trace says
        why), and when none can, the request fails as a bad_request naming it.
        cost-aware takes `quality_target` (share of the best single provider's outcome
        score to hold over the stream) or `outcome_value_usd` (what a right answer is
        worth); `explore=False` makes the choice greedy (never exploratory). `cache`: use the
        response cache for this request — read, write, both, or only (default off).
        Raises `RoutingError` (with `.error_class` and `.trace`) when no provider answered.
        """
        req, cls = self._request(messages, output, policy=policy, provider=provider,
                                 fallbacks=fallbacks, context=context, max_tokens=max_tokens,
                                 timeout=timeout, temperature=temperature,
                                 request_id=request_id, quality_target=quality_target,
                                 outcome_value_usd=outcome_value_usd, explore=explore,
                                 user=user, cache=cache, **params)
        return as_model(self._route_sync(req), cls)

    def _route_sync(self, req: RouteRequest) -> Any:
        """One request, blocking; a router that died holding it fails the way `aroute`
        does (actors/caller/lost_router.py): the unknown outcome recorded, then RoutingError."""
        req = with_id(req)
        try:
            return ray_calls.get(self._h.router.route.remote(req))
        except ray.exceptions.RayActorError as exc:
            error, row = lost_router.lost(req, lost_router.actor_lost(exc))
            lost_router.record_sync(self._h.tracker, row)
            raise error from None

    async def acomplete(self, messages: MessagesLike, output: OutputLike = "text",
                        **kw: Any) -> RouteResult:
        """The async twin of `complete`, for asyncio code and many requests in flight."""
        req, cls = self._request(messages, output, **kw)
        return as_model(await self.aroute(req), cls)

    def stream(self, messages: MessagesLike, output: OutputLike = "text",
               **kw: Any) -> RouteStream:
        """The answer as it arrives: an async iterator of TextDelta / ToolCallDelta /
        Finish events, `.result` (the RouteResult) once it ended (actors/caller/route_streams.py).
        Takes `complete`'s arguments; use it from asyncio code (`async for`)."""
        req, cls = self._request(messages, output, **kw)
        req = with_id(req)
        return RouteStream(lambda: self.stream_route(req), req, cls)

    def stream_sync(self, messages: MessagesLike, output: OutputLike = "text",
                    **kw: Any) -> SyncRouteStream:
        """The blocking twin of `stream`: `for ev in llm.stream_sync(...)`, then `.result`."""
        req, cls = self._request(messages, output, **kw)
        req = with_id(req)
        return SyncRouteStream(self._h.router, req, cls)

    def stream_route(self, req: RouteRequest) -> AsyncIterator[Any]:
        """A ready RouteRequest's stream (what Serve uses): StreamStart, the events, then
        the RouteResult; over the same channel as `aroute` (a local socket on the router's
        node, else a Ray streaming call)."""
        return self._router_channel.stream(req)

    async def aroute(self, req: RouteRequest) -> RouteResult:
        """Route a ready RouteRequest (what Serve and the backtest runner use).

        Calls from one event loop share a channel to the router: a local socket on the
        router's node, otherwise batched Ray calls (thousands in flight cost a few).
        """
        req = with_id(req)
        if self._router_recovery.down:  # a call found it gone: wait for its restart first
            await self._router_recovery.back(req.timeout or ROUTER_WAIT_S)
        try:
            return await self._router_channel.call(req)
        except ChannelBroken as exc:
            self._router_recovery.lost()
            error, row = lost_router.lost(req, str(exc))
            await lost_router.record(self._h.tracker, row)
            raise error from None

    def analyze(
        self,
        data: pd.DataFrame | Any,
        task: str = "analysis",
        *,
        symbol: str | None = None,
        timeframe: str | None = None,
        as_of: Any = None,
        position: dict[str, Any] | None = None,
        **route: Any,
    ) -> RouteResult:
        """OHLCV bars (or a ready MarketContext) → a routed, validated TradeSignal
        (task "analysis"/"pattern") or RiskAssessment (task "risk") in `result.parsed`,
        with cost and trace on the result.

        An answer that does not validate counts against its provider and the router falls
        back to the next one.
        """
        from actors.routing.analysis import analysis_request, context_from_bars
        from prompts import MarketContext

        if isinstance(data, MarketContext):
            ctx = data.with_position(position) if position is not None else data
        else:
            if not symbol or not timeframe:
                raise ValueError("analyze(bars, ...) needs symbol= and timeframe=")
            ctx = context_from_bars(data, symbol, timeframe, rules=self.config.regime, as_of=as_of,
                                    position=position)
        req = analysis_request(ctx, task, self.config, **route)
        return as_model(self._route_sync(req), builtin_model(req.output))

    def route(self, req: RouteRequest) -> Any:
        """The raw ObjectRef of a routed request (for fan-out with ray.wait)."""
        return self._h.router.route.remote(req)

