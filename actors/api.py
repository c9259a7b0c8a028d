"""The Python API for notebooks and scripts: `connect()` and the client it returns.

    from actors import connect
    llm = connect()                      # embedded local Ray; real providers (keys from env)
    llm = connect(simulate=True)         # or: every provider answered by the built-in simulator
    r = llm.complete("Is SPY bullish?", policy="cost-aware", context={"regime": "bull"})
    r.text, r.cost_usd, r.trace.chosen
    llm.status(); llm.costs("hour"); llm.performance()
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd
import ray
from pydantic import BaseModel

from actors import spend
from actors.channel import ChannelBroken, ChannelPool
from actors.clients.base import Message
from actors.config import Config, load_config, parse_config
from actors.errors import ErrorClass
from actors.feedback import FeedbackAck, FeedbackItem
from actors.keys import SIMULATED_WARNING
from actors.outputs import OutputLike, as_model, builtin_model, request_fields
from actors.response_cache import CacheMode
from actors.route import RouteRequest, RouteResult, RoutingError, RoutingTrace
from actors.route_streams import RouteStream, SyncRouteStream
from actors.router_actor import NAMESPACE, provider_actor_name
from actors.router_recovery import ROUTER_WAIT_S, RouterRecovery
from actors.spend import TimeLike
from actors.system import Handles, start_system, stop_system

MessagesLike = str | list[Message] | list[dict[str, str]]
log = logging.getLogger("actors")


def _config(config: Config | dict[str, Any] | str | os.PathLike[str] | None) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def _unwrap(exc: BaseException) -> BaseException:
    """Give callers the router's own error, not Ray's wrapper around it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _get(ref: Any) -> Any:
    """`ray.get`, raising the router's or tracker's own error rather than Ray's wrapper."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise _unwrap(exc) from None


def as_messages(messages: MessagesLike) -> list[Message]:
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]


def connect(
    address: str | None = None,
    config: Config | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    simulate: bool = False,
    **ray_init: Any,
) -> RouterClient:
    """Start or join Ray and the router's actors; return a client.

    address: None = $RAY_ADDRESS if set (as in a Ray job), else a new embedded local Ray
    instance; "auto" = the running cluster on this machine; "ray://host:10001" = a Ray
    client connection. config: a path, a dict, a Config or None (--config /
    $LLM_ROUTER_CONFIG / the shipped configs/providers.yaml). Other keywords go to
    `ray.init`: a new local instance starts with its dashboard unless
    `include_dashboard=False`.

    Providers are real unless `simulate=True` (or `simulator.mode: always`): then every
    one is answered by the built-in simulator and every answer says so. Without it, a
    provider whose key variable is unset stops start-up with an error naming it.
    """
    cfg = _config(config)
    if simulate:
        cfg = cfg.simulating()
    if not ray.is_initialized():
        ray_init.setdefault("namespace", NAMESPACE)
        ray_init.setdefault("log_to_driver", False)
        if address is None:
            # Not Ray's own default, which joins whatever `ray start` last ran on this
            # machine (and hangs if that cluster has gone without `ray stop`).
            address = os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":  # the dashboard shows the named actors; off: include_dashboard=False
            ray_init.setdefault("include_dashboard", True)
        else:  # a running cluster has (or lacks) its dashboard already
            ray_init.pop("include_dashboard", None)
        ray.init(address=address, **ray_init)
    handles = start_system(cfg)
    client = RouterClient(handles, handles.config or cfg)
    about = client.describe()
    if about["simulated"]:
        log.warning(SIMULATED_WARNING)
    log.log(logging.WARNING if "override" in about["budgets"] else logging.INFO,
            "llm-router state %s; %s", about["state_dir"], about["budgets"])
    return client


def describe_lines(about: dict[str, Any]) -> list[str]:
    """What a command prints at start-up about the instance it started or joined."""
    lines = [f"state directory: {about['state_dir']}", about["budgets"]]
    if about["simulated"]:
        lines.append(SIMULATED_WARNING)
    cache = about.get("cache")
    if cache:
        lines.append(f"response cache: {cache['path']} ({cache['entries']} answers)")
    return lines


def attach(config: Config | dict[str, Any] | str | os.PathLike[str] | None = None) -> RouterClient:
    """A client for actors that already run (inside a Serve replica or a Ray task).

    Needs Ray initialized (it is, inside any Ray worker); raises a clear error if the
    router has not been started with `connect()` / `llm-router serve`.
    """
    from actors.system import attach_system

    handles = attach_system(_config(config))
    assert handles.config is not None
    return RouterClient(handles, handles.config)


class RouterClient:
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
        return as_model(_get(self._h.router.route.remote(req)), cls)

    async def acomplete(self, messages: MessagesLike, output: OutputLike = "text",
                        **kw: Any) -> RouteResult:
        """The async twin of `complete`, for asyncio code and many requests in flight."""
        req, cls = self._request(messages, output, **kw)
        return as_model(await self.aroute(req), cls)

    def stream(self, messages: MessagesLike, output: OutputLike = "text",
               **kw: Any) -> RouteStream:
        """The answer as it arrives: an async iterator of TextDelta / ToolCallDelta /
        Finish events, `.result` (the RouteResult) once it ended (actors/route_streams.py).
        Takes `complete`'s arguments; use it from asyncio code (`async for`)."""
        req, cls = self._request(messages, output, **kw)
        if req.request_id is None:
            req = req.model_copy(update={"request_id": uuid.uuid4().hex})
        return RouteStream(lambda: self.stream_route(req), req, cls)

    def stream_sync(self, messages: MessagesLike, output: OutputLike = "text",
                    **kw: Any) -> SyncRouteStream:
        """The blocking twin of `stream`: `for ev in llm.stream_sync(...)`, then `.result`."""
        req, cls = self._request(messages, output, **kw)
        if req.request_id is None:
            req = req.model_copy(update={"request_id": uuid.uuid4().hex})
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
        if req.request_id is None:
            req = req.model_copy(update={"request_id": uuid.uuid4().hex})
        if self._router_recovery.down:  # a call found it gone: wait for its restart first
            await self._router_recovery.back(req.timeout or ROUTER_WAIT_S)
        try:
            return await self._router_channel.call(req)
        except ChannelBroken as exc:
            self._router_recovery.lost()
            message = (f"{exc}; request {req.request_id} has an unknown outcome "
                       "(its audit rows say what happened)")
            await self._record_unknown(req, message)
            raise RoutingError(ErrorClass.INTERNAL, message,
                               RoutingTrace(request_id=req.request_id, policy=req.policy or ""),
                               ) from None

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
        from actors.analysis import analysis_request, context_from_bars
        from prompts import MarketContext

        if isinstance(data, MarketContext):
            ctx = data.with_position(position) if position is not None else data
        else:
            if not symbol or not timeframe:
                raise ValueError("analyze(bars, ...) needs symbol= and timeframe=")
            ctx = context_from_bars(data, symbol, timeframe, rules=self.config.regime, as_of=as_of,
                                    position=position)
        req = analysis_request(ctx, task, self.config, **route)
        return as_model(_get(self._h.router.route.remote(req)), builtin_model(req.output))

    async def _record_unknown(self, req: RouteRequest, message: str) -> None:
        """The router died holding this request: leave a terminal placeholder row so no
        request is without an outcome. If the router had finished it, its journal replays
        the real row, which replaces the placeholder."""
        from actors.audit import UNKNOWN_OUTCOME
        from actors.records import RequestRecord

        rec = RequestRecord(request_id=req.request_id or "", ts=time.time(),
                            policy=req.policy or "", context=req.context, ok=False,
                            error_class=UNKNOWN_OUTCOME, error=message[:500], attempts=0)
        for _ in range(3):
            try:
                await self._h.tracker.record.remote([rec])
                return
            except Exception:
                await asyncio.sleep(0.5)

    def route(self, req: RouteRequest) -> Any:
        """The raw ObjectRef of a routed request (for fan-out with ray.wait)."""
        return self._h.router.route.remote(req)

    # -- state and reports ---------------------------------------------------------------

    def status(self) -> pd.DataFrame:
        """Breaker state, rolling metrics and limits per provider."""
        refs = {n: h.status.remote() for n, h in self._h.providers.items()}
        rows = []
        for name, ref in refs.items():
            s = ray.get(ref)
            rows.append({
                "provider": name, "model": s["model"], "state": s["state"],
                "success_rate": s["success_rate"], "p50_s": s["p50_s"], "p95_s": s["p95_s"],
                "mean_confidence": s["mean_confidence"], "samples": s["samples"],
                "inflight": s["inflight"], "waiting": s["waiting"], "rpm": s["rpm"],
                "tpm": s["tpm"], "max_concurrency": s["max_concurrency"],
                "simulated": s["simulated"], "transitions": s["breaker"].get("transitions"),
            })
        return pd.DataFrame(rows).set_index("provider")

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every record routed so far is in the audit trail (reports read the
        trail as it is and never wait: call this first to see your latest requests).
        Returns how many records were still unacknowledged after 30 s (0 normally)."""
        return ray.get(self._h.router.flush.remote(), timeout=timeout)

    def costs(self, by: str = "hour", since: TimeLike = None,
              until: TimeLike = None, group_by: str = "provider") -> pd.DataFrame:
        """Cost by (provider, model, simulated) per UTC hour or day — tokens, requests,
        attempts, USD — over [since, until) (unix seconds, ISO 8601 or datetimes; default
        the last 2 days by hour, 31 days by day), aggregated in SQL. `group_by="user"`:
        by (user, simulated) instead — each desk or strategy's own spend."""
        spend.window(by, since, until)  # a bad argument fails here, naming itself
        spend.group_columns(group_by)
        return _get(self._h.tracker.costs.remote(by, since, until, group_by))

    def performance(self, by_context: bool = False) -> pd.DataFrame:
        return ray.get(self._h.tracker.performance.remote(by_context))

    def cost_per_token(self, since: TimeLike = None, until: TimeLike = None) -> pd.DataFrame:
        """Realized USD per input/output token by model over a window (default: 31 days)."""
        return _get(self._h.tracker.cost_per_token.remote(since, until))

    def set_budgets(self, budgets: dict[str, Any]) -> pd.DataFrame:
        """Change budget limits at run time by merging, e.g. {"hourly_usd": 5} keeps every
        other limit; null removes one ({"per_provider": {"claude": None}}). Spend so far
        counts against the new limits; the change is kept in this instance's state
        directory and re-applied (and reported) at every start. Requests already in flight
        keep their reservations: a limit lowered below spent + reserved cannot stop them
        (the table returned is the ledger as the new limit took effect — check it)."""
        return pd.DataFrame(_get(self._h.router.set_budgets.remote(budgets)))

    def reset_budgets(self) -> pd.DataFrame:
        """Drop every run-time budget change: back to the configured limits."""
        return pd.DataFrame(_get(self._h.router.set_budgets.remote(None)))

    def budgets(self) -> pd.DataFrame:
        """Spend vs every limit in force, with `source`: config, or a run-time override."""
        return pd.DataFrame(_get(self._h.router.budgets.remote()))

    def describe(self) -> dict[str, Any]:
        """This instance: state directory, simulated or real, budgets in force and why."""
        return _get(self._h.router.describe.remote())

    def audit(self, request_id: str) -> list[dict[str, Any]]:
        self.flush()
        return _get(self._h.tracker.audit.remote(request_id))

    def active(self, request_ids: list[str]) -> set[str]:
        """Which of these request ids the router is working on right now."""
        return set(_get(self._h.router.active.remote(list(request_ids))))

    def feedback(self, request_id: str, score: float) -> None:
        """Attach a realized outcome (0..1, e.g. 1.0 = the trade call was right). The router
        learns from it at once; it reaches the audit trail with the request's records."""
        _get(self._h.router.feedback.remote(request_id, float(score)))

    async def afeedback(self, request_id: str, score: float) -> None:
        """The async twin of `feedback`."""
        try:
            await self._h.router.feedback.remote(request_id, float(score))
        except ray.exceptions.RayTaskError as exc:
            raise _unwrap(exc) from None

    async def afeedback_many(self, items: list[FeedbackItem]) -> list[FeedbackAck]:
        """Many outcomes in one router call (what a backtest sends): each acknowledged on
        its own — recorded, unknown (not recorded yet: ask again), invalid or failed."""
        try:
            return await self._h.router.feedback_many.remote(items)
        except ray.exceptions.RayTaskError as exc:
            raise _unwrap(exc) from None

    def estimates(self) -> pd.DataFrame:
        """What the router has learned per provider and context: outcome score (posterior
        mean), evidence behind it, success rate, expected output tokens."""
        rows = ray.get(self._h.router.estimates.remote())
        return pd.DataFrame(rows).set_index(["provider", "context"]) if rows else pd.DataFrame()

    def quality_prices(self) -> pd.DataFrame:
        """cost-aware's learned price of quality (USD per unit outcome score) per target."""
        return pd.DataFrame(ray.get(self._h.router.quality_prices.remote()))

    def reset(self, provider: str) -> dict[str, Any]:
        """Close a provider's breaker by hand (e.g. after fixing its API key)."""
        return _get(self._h.router.reset.remote(provider))

    def provider(self, name: str) -> Any:
        return ray.get_actor(provider_actor_name(name), namespace=NAMESPACE)

    @property
    def simulator(self) -> Any | None:
        return self._h.simulator

    @property
    def handles(self) -> Handles:
        return self._h

    def shutdown(self, *, stop_ray: bool = True, flush_timeout: float | None = None) -> None:
        """Kill the router's actors (the audit DB stays) and, by default, disconnect.

        flush_timeout: how long to wait for the tracker to take the last records (what it
        does not get stays in the router's journal for the next start).
        """
        try:
            self.flush(flush_timeout)
        except Exception:  # best effort: the tracker may already be gone
            pass
        stop_system()
        if stop_ray:
            ray.shutdown()


