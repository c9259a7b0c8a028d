"""Routing for provider batch jobs (backtest `--batch`): the router decides, the caller submits.

A batched request takes the router's own path in two halves, so the policy, budgets, the
response cache, the audit trail and the learner treat it like a synchronous one:

- `plan`: the same decision as `Router._route` (cache replay, policy ranking, exclusions,
  budget). The first usable provider in the policy's order either has a batch API
  (`batch_discount` in its config): its worst-case cost *at the batch price* is reserved and
  the caller puts the request in a batch; or it has none: the caller sends the request
  synchronously, pinned to that order. A cached answer or a refusal is the plan's outcome.
- `settle`: one item's outcome (actors/clients/batch.py `ItemOutcome`, already at the batch
  price) becomes a `ProviderReply` checked like a synchronous answer (`check_result`), then
  goes through `Router._take_reply` (budget settled, attempt records) and `_conclude` (the
  request record): one rule for both paths. Answers are kept in the response cache.

`BatchDesk` is plain Python around a `Router`; RouterActor exposes it in two methods.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from actors.clients.batch import ItemOutcome
from actors.core.budget import Reservation
from actors.core.cost import worst_case_cost
from actors.core.errors import ErrorClass, ProviderError
from actors.core.snapshot import Snapshot
from actors.routing.cache_route import CacheStep
from actors.routing.route import RouteRequest, RouteResult, RoutingError, RoutingTrace
from actors.routing.router import Router, prompt_text
from actors.rpc.messages import AttemptInfo, ProviderCall, ProviderReply
from actors.shells.provider import check_result

#: Open reservations kept at most (a driver that never settles cannot grow this forever).
MAX_OPEN = 1_000_000


class PlanKind(StrEnum):
    BATCH = "batch"  # put it in a batch for `provider` (budget reserved at the batch price)
    SYNC = "sync"  # send it synchronously to `provider`, then `fallbacks`
    ANSWERED = "answered"  # the response cache answered it: `result`
    FAILED = "failed"  # refused (budget, cache-only miss, bad request): `error_class`


class BatchPlan(BaseModel):
    """The router's decision for one request of a batched backtest."""

    request_id: str
    kind: PlanKind
    provider: str | None = None
    fallbacks: list[str] = Field(default_factory=list)
    reserved_usd: float = 0.0
    result: RouteResult | None = None
    error_class: ErrorClass | None = None
    error: str | None = None
    trace: RoutingTrace | None = None

    def routing_error(self) -> RoutingError:
        assert self.error_class is not None and self.trace is not None
        return RoutingError(self.error_class, self.error or "", self.trace)


class BatchSettle(BaseModel):
    """One batch item's outcome, sent back to the router that planned it."""

    request: RouteRequest
    provider: str
    outcome: ItemOutcome


class BatchDesk:
    """Reservations of requests that sit in provider batches, and their two halves."""

    def __init__(self, router: Router) -> None:
        self.r = router
        self.open: dict[str, tuple[Reservation, float]] = {}  # request id → (budget, planned at)
        self._priced: dict[str, tuple[Snapshot, Snapshot]] = {}  # name → (live, at batch price)

    def _at_batch_prices(self) -> dict[str, Snapshot]:
        """The router's snapshots with batch providers at their batch price (cost-aware and
        the cheaper-first tie-break rank what a batched answer really costs)."""
        out = {}
        for name, snap in self.r.snapshots.items():
            d = self.r.providers[name].batch_discount
            if d is None:
                out[name] = snap
                continue
            seen = self._priced.get(name)
            if seen is None or seen[0] is not snap:
                seen = self._priced[name] = (snap, snap.model_copy(update={
                    "input_cost_per_mtok": snap.input_cost_per_mtok * d,
                    "output_cost_per_mtok": snap.output_cost_per_mtok * d}))
            out[name] = seen[1]
        return out

    def _release(self, request_id: str) -> None:
        held = self.open.pop(request_id, None)
        if held is not None:
            self.r.ledger.settle(held[0], 0.0, time.time())

    async def plan(self, req: RouteRequest) -> BatchPlan:
        r = self.r
        request_id = req.request_id or ""
        policy = req.policy or r.spec.default_policy
        self._release(request_id)  # planned again (e.g. its twin's answer came first)
        started = time.time()
        trace = RoutingTrace(request_id=request_id, policy=policy, context=req.context)
        deadline = started + (req.timeout or r.spec.default_timeout_s)
        reasons: dict[str, str] = {}
        result: RouteResult | None = None
        error: ProviderError | None = None
        try:
            completion = req.completion()
            cache = CacheStep(r, req, policy, completion, request_id, trace)
            order: list[str] = []
            if cache.result is None:
                live, r.snapshots = r.snapshots, self._at_batch_prices()
                try:  # ranked at the prices this run pays (no await: nothing else sees it)
                    completion, need, order, _ = r._plan(req, policy, started, trace, reasons,
                                                         completion)
                finally:
                    r.snapshots = live
            async for name in cache.providers(order, deadline, reasons):
                spec = r.providers[name]
                if spec.batch_discount is None:
                    return BatchPlan(request_id=request_id, kind=PlanKind.SYNC, provider=name,
                                     fallbacks=order[order.index(name) + 1:], trace=trace)
                worst = worst_case_cost(spec, need.prompt_tokens,
                                        req.max_tokens or spec.max_output_tokens, req.n)
                worst *= spec.batch_discount
                try:
                    res = r.ledger.reserve(name, worst, started)
                except ProviderError as exc:
                    reasons[name] = exc.message
                    continue
                if len(self.open) < MAX_OPEN:
                    self.open[request_id] = (res, started)
                trace.chosen = name
                return BatchPlan(request_id=request_id, kind=PlanKind.BATCH, provider=name,
                                 reserved_usd=worst, trace=trace)
            result = cache.result
            if result is None:
                error = cache.give_up(r, reasons)
        except ProviderError as exc:
            error = exc
        r._conclude(request_id, policy, req, trace, [], result, error, started)
        if result is not None:
            result.trace = trace
            return BatchPlan(request_id=request_id, kind=PlanKind.ANSWERED,
                             provider=result.provider, result=result, trace=trace)
        assert error is not None
        msg = str(error) if error.provider else error.message
        return BatchPlan(request_id=request_id, kind=PlanKind.FAILED,
                         error_class=error.error_class, error=msg, trace=trace)

    def settle(self, s: BatchSettle) -> RouteResult | RoutingError:
        """Record one item's outcome like a synchronous answer; the result or the error."""
        r, req, name = self.r, s.request, s.provider
        if name not in r.providers:
            raise ValueError(f"unknown provider {name!r}")
        request_id = req.request_id or ""
        policy = req.policy or r.spec.default_policy
        held = self.open.pop(request_id, None)
        res, started = held if held is not None else (Reservation(name, 0.0), time.time())
        completion = req.completion()
        reply = _reply(r, name, req, completion, s)
        trace = RoutingTrace(request_id=request_id, policy=policy, context=req.context)
        records: list[Any] = []
        text = r.keep_text(prompt_text(req)) if r.spec.store_text else None
        result, reason = r._take_reply(name, reply, res, req, request_id, policy, trace,
                                       records, text, execution="batch")
        error = None
        if result is None:
            error = ProviderError(reply.error_class or ErrorClass.INTERNAL, reason or "failed",
                                  provider=name)
        elif r.cache is not None and req.cache not in ("off", "only"):
            probe = r._probe(req, policy, completion)
            if probe is not None:
                probe.keep(result, r.snapshots[name].simulated)
        r._conclude(request_id, policy, req, trace, records, result, error, started)
        try:
            return r._outcome(trace, result, error)
        except RoutingError as exc:
            return exc


def _reply(r: Router, name: str, req: RouteRequest, completion: Any,
           s: BatchSettle) -> ProviderReply:
    """The item as the provider actor would have replied to a synchronous call."""
    spec, o, now = r.providers[name], s.outcome, time.time()
    res = o.result
    error: ProviderError | None = None
    parsed = confidence = None
    if res is not None:
        call = ProviderCall(request_id=req.request_id or "", completion=completion,
                            output=req.output, priority="batch")
        try:
            parsed, confidence = check_result(call, completion, res)
        except ProviderError as exc:
            error = exc
    else:
        error = ProviderError(o.error_class or ErrorClass.SERVER, o.error or "failed",
                              provider=name)
    attempt = AttemptInfo.billed(res, attempt=1, ts=now, ok=error is None,
                                 error_class=error.error_class.value if error else None,
                                 error=error.message[:500] if error else None,
                                 latency_s=0.0, confidence=confidence)
    return ProviderReply(provider=name, model=spec.model, result=res if error is None else None,
                         parsed=parsed, error_class=error.error_class.value if error else None,
                         error=error.message if error else None, attempts=[attempt],
                         simulated=r.snapshots[name].simulated)
