"""What a routed request's attempts leave behind: the provider call with its budget
reservation, the reply (or the lost actor) turned into the trace and attempt records, the
budget settled at what was billed, and at the end the request record and the result or
the error. Shared by the plain, streamed (router_stream.py) and batched (batch_route.py)
paths through `Router`, which inherits it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.clients.base import Completion
from actors.config import ProviderSpec
from actors.core.budget import BudgetLedger, BudgetWarning, Reservation
from actors.core.cost import worst_case_cost
from actors.core.errors import ErrorClass, ProviderError, refused_for
from actors.core.records import AttemptRecord, RequestRecord
from actors.core.snapshot import Need, Snapshot
from actors.routing.cache_route import AnsweredHits
from actors.routing.route import (
    RouteRequest,
    RouteResult,
    RoutingError,
    RoutingTrace,
    TraceAttempt,
    Usage,
)
from actors.routing.router_spec import RouterSpec
from actors.rpc.messages import ProviderCall, ProviderReply

log = logging.getLogger(__name__)

CallProvider = Callable[[str, ProviderCall], Awaitable[ProviderReply]]


class RouterOutcomes:
    """The attempt-and-record half of `Router` (actors/routing/router.py sets these attributes)."""

    spec: RouterSpec
    providers: dict[str, ProviderSpec]
    snapshots: dict[str, Snapshot]
    ledger: BudgetLedger
    outstanding: dict[str, int]
    hit_ids: AnsweredHits
    keep_text: Callable[[str | None], str | None]
    _call: CallProvider
    _sink: Callable[[list[Any]], None]
    _on_warning: Callable[[BudgetWarning], None] | None
    update_snapshot: Callable[[Snapshot | dict[str, Any]], None]

    async def _try(self, name: str, req: RouteRequest, request_id: str, policy: str,
                   completion: Completion, deadline: float, need: Need, trace: RoutingTrace,
                   records: list[Any], text: str | None,
                   execution: str) -> tuple[RouteResult | None, str | None]:
        spec = self.providers[name]
        now = time.time()
        worst = worst_case_cost(spec, need.prompt_tokens, req.max_tokens or spec.max_output_tokens,
                                req.n)
        try:
            res: Reservation = self.ledger.reserve(name, worst, now)
        except ProviderError as exc:
            return None, exc.message
        call = ProviderCall(request_id=request_id, completion=completion, deadline=deadline,
                            output=req.output, attempt_offset=len(trace.attempts),
                            priority=req.priority, execution=execution, reserved_usd=worst)
        self.outstanding[name] = self.outstanding.get(name, 0) + 1
        try:
            reply = await self._call(name, call)
        except Exception as exc:  # the actor died or is unreachable
            return None, self._actor_lost(name, exc, res, worst, req, request_id, policy,
                                          trace, records, text, execution)
        finally:
            self.outstanding[name] -= 1
        return self._take_reply(name, reply, res, req, request_id, policy, trace, records,
                                text, execution)

    def _actor_lost(self, name: str, exc: Exception, res: Reservation, worst: float,
                    req: RouteRequest, request_id: str, policy: str, trace: RoutingTrace,
                    records: list[Any], text: str | None, execution: str) -> str:
        """A provider actor that died or is unreachable: we cannot know what it spent, so
        settle at the reserved worst case (never under-count); the reason is returned."""
        self._settle(res, worst, trace)
        n = len(trace.attempts) + 1
        msg = f"provider actor unavailable: {type(exc).__name__}"
        trace.attempts.append(TraceAttempt(provider=name, attempt=n, ok=False,
                                           error_class=ErrorClass.INTERNAL.value, error=msg))
        records.append(AttemptRecord(
            request_id=request_id, attempt=n, ts=time.time(), provider=name,
            model=self.providers[name].model, policy=policy, context=req.context, ok=False,
            error_class=ErrorClass.INTERNAL.value, error=msg, cost_usd=0.0, prompt=text,
            execution=execution, simulated=self.snapshots[name].simulated, user=req.user))
        return msg

    def _take_reply(self, name: str, reply: ProviderReply, res: Reservation,
                    req: RouteRequest, request_id: str, policy: str, trace: RoutingTrace,
                    records: list[Any], text: str | None,
                    execution: str) -> tuple[RouteResult | None, str | None]:
        """A provider's reply: snapshot, budget settled at what was billed, attempts into
        the trace and the records; the result, or why there is none."""
        spec = self.providers[name]
        if reply.snapshot:
            self.update_snapshot(reply.snapshot)
        spent = sum(a.cost_usd for a in reply.attempts)
        self._settle(res, spent, trace)
        trace.simulated = trace.simulated or reply.simulated
        for a in reply.attempts:
            trace.attempts.append(TraceAttempt(provider=name, attempt=a.attempt, ok=a.ok,
                                               error_class=a.error_class, error=a.error,
                                               status=a.status, latency_s=a.latency_s))
            trace.input_tokens += a.input_tokens
            trace.output_tokens += a.output_tokens
            trace.cost_usd += a.cost_usd
            records.append(a.record(request_id, name, spec.model, policy=policy,
                                    context=req.context, prompt=text,
                                    response=self.keep_text(a.response)
                                    if self.spec.store_text else None,
                                    simulated=reply.simulated, execution=execution,
                                    user=req.user))
        if reply.result is None:
            if not reply.attempts:  # refused before any HTTP attempt (e.g. breaker just opened)
                n = len(trace.attempts) + 1
                trace.attempts.append(TraceAttempt(provider=name, attempt=n, ok=False,
                                                   error_class=reply.error_class, error=reply.error))
            return None, f"{reply.error_class}: {reply.error}"
        r = reply.result
        trace.chosen = name
        return RouteResult(
            request_id=request_id, provider=name, model=r.model, text=r.text,
            finish_reason=r.finish_reason, input_tokens=trace.input_tokens,
            output_tokens=trace.output_tokens, cost_usd=trace.cost_usd, latency_s=0.0,
            parsed=reply.parsed, trace=trace, tool_calls=r.tool_calls, choices=r.choices,
            logprobs=r.logprobs, usage=Usage.of(r),
        ), None

    def _settle(self, res: Reservation, actual: float, trace: RoutingTrace) -> None:
        for w in self.ledger.settle(res, actual, time.time()):
            trace.warnings.append(w.message)
            log.warning("budget soft limit: %s", w.message)
            if self._on_warning:
                self._on_warning(w)

    def _give_up(self, reasons: dict[str, str], trace: RoutingTrace) -> ProviderError:
        if not reasons:
            return ProviderError(ErrorClass.NO_PROVIDER, "no provider is configured or enabled")
        detail = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        if refused_for(reasons.values(), ErrorClass.BUDGET_EXCEEDED):
            return ProviderError(ErrorClass.BUDGET_EXCEEDED, f"every provider is over budget — {detail}")
        return ProviderError(ErrorClass.NO_PROVIDER, f"no provider could answer — {detail}")

    def _conclude(self, request_id: str, policy: str, req: RouteRequest, trace: RoutingTrace,
                  records: list[Any], result: RouteResult | None, error: ProviderError | None,
                  started: float) -> None:
        """The request's own record, with its attempts' records, to the sink."""
        trace.latency_s = time.time() - started
        if trace.cached:
            self.hit_ids.add(request_id)
        records.append(self._request_record(request_id, policy, req, trace, result, error))
        self._sink(records)

    @staticmethod
    def _outcome(trace: RoutingTrace, result: RouteResult | None,
                 error: ProviderError | None) -> RouteResult:
        """The result with its trace, or the RoutingError."""
        if result is not None:
            result.trace = trace
            result.latency_s = trace.latency_s
            return result
        assert error is not None
        raise RoutingError(error.error_class, str(error) if error.provider else error.message, trace,
                           param=getattr(error, "param", None))

    def _request_record(self, request_id: str, policy: str, req: RouteRequest, trace: RoutingTrace,
                        result: RouteResult | None, error: ProviderError | None) -> RequestRecord:
        conf = None
        if result is not None and isinstance(result.parsed, dict):
            c = result.parsed.get("confidence")
            conf = float(c) if isinstance(c, int | float) else None
        return RequestRecord(
            request_id=request_id, ts=time.time(), policy=policy, context=req.context,
            provider=result.provider if result else None, model=result.model if result else None,
            ok=result is not None, error_class=error.error_class.value if error else None,
            error=(str(error)[:500] if error else None), attempts=len(trace.attempts),
            input_tokens=trace.input_tokens, output_tokens=trace.output_tokens,
            cost_usd=trace.cost_usd, latency_s=trace.latency_s, confidence=conf,
            quality_target=trace.quality_target, explored=trace.explored,
            simulated=trace.simulated, user=req.user, cached=trace.cached,
            saved_usd=trace.saved_usd,
        )
