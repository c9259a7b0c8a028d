"""A routed request whose answer streams: the router's side of true streaming.

The same decision as `Router.route` (policy over snapshots, exclusions, budgets), then the
providers in order, each as a stream: until a provider's first token, a failure falls back
to the next one exactly as a plain request would; from the first token on, the events go
to the caller as they arrive and there is no fallback (the caller has text already). The
stream yields `StreamStart` (who answers) just before the first event, the events
(TextDelta, ToolCallDelta, Finish), and last the `RouteResult`; a failure raises
RoutingError (before the start: like any failed request; after: ending the stream).

Accounting is that of a plain request: the budget reservation is settled at what the
provider billed (from the stream's usage event), and the attempt and request rows are
written. A caller that goes away mid-stream closes the provider's stream (the provider
stops generating); the provider actor records the billed attempt itself (usage estimated
and marked when the stream was cut before its usage event), the router settles the
reservation at its own estimate and writes the request row as `cancelled`.

The response cache applies as to a plain request (actors/routing/cache_route.py): a hit is streamed
from the cache (StreamStart says `cached`; no provider called, nothing reserved), `only`
fails with cache_miss instead of calling a provider, and a paid stream's answer is kept.

Request ids stay idempotency keys: a streamed request whose id has a stored outcome gets
that outcome replayed as a stream (marked replayed); an id in flight is a conflict (409).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from actors.clients.base import Result
from actors.clients.stream import Done, Finish, TextDelta, ToolCallDelta, events_of
from actors.core.cost import cost_usd, worst_case_cost
from actors.core.errors import FALLBACK, ErrorClass, ProviderError
from actors.core.tokens import CHARS_PER_TOKEN
from actors.routing.cache_route import CacheStep
from actors.routing.route import RouteRequest, RouteResult, RoutingError, RoutingTrace
from actors.rpc.messages import ProviderCall, ProviderReply
from actors.stores.idempotency import IdempotencyConflict

if TYPE_CHECKING:
    from actors.routing.router import Router

StreamProvider = Callable[[str, ProviderCall], AsyncIterator[Any]]
StreamItem = Any  # StreamStart | TextDelta | ToolCallDelta | Finish | RouteResult


class StreamStart(BaseModel):
    """The provider whose tokens follow (sent just before the first one)."""

    request_id: str
    provider: str
    model: str
    policy: str
    simulated: bool = Field(False, description="Made up by the built-in simulator.")
    replayed: bool = Field(False, description="The stored outcome of an earlier request.")
    cached: bool = Field(False, description="A response-cache hit: no provider was called.")


def events_of_route(r: RouteResult) -> list[TextDelta | ToolCallDelta | Finish]:
    """A whole routed answer as stream events (a replayed answer, streamed again)."""
    whole = Result(provider=r.provider, model=r.model, text=r.text, input_tokens=r.input_tokens,
                   output_tokens=r.output_tokens, finish_reason=r.finish_reason,
                   latency_s=r.latency_s, tool_calls=r.tool_calls, logprobs=r.logprobs,
                   choices=r.choices)
    return [ev for ev in events_of(whole) if not isinstance(ev, Done)]


async def route_stream(router: Router, req: RouteRequest) -> AsyncIterator[StreamItem]:
    """See the module docstring; `router.stream_provider` opens one provider's stream."""
    from actors.routing.router import as_replayed

    request_id = req.request_id or uuid.uuid4().hex
    policy = req.policy or router.spec.default_policy
    book = router.idempotency
    fp = ""
    if book is not None:
        fp = book.fingerprint(req, policy)
        try:
            stored = await book.claim(request_id, fp, fresh=req.new_id)
        except IdempotencyConflict as exc:
            raise RoutingError(exc.error_class, str(exc), RoutingTrace(
                request_id=request_id, policy=policy, context=req.context)) from None
        if stored is not None:
            outcome = as_replayed(stored)
            if isinstance(outcome, RoutingError):
                raise outcome
            yield StreamStart(request_id=request_id, provider=outcome.provider,
                              model=outcome.model, policy=policy,
                              simulated=outcome.simulated, replayed=True)
            for ev in events_of_route(outcome):
                yield ev
            yield outcome
            return
    kept: Any = None
    try:
        async for item in _routed(router, req, request_id, policy):
            if isinstance(item, RouteResult):
                kept = item
            yield item
    except RoutingError as exc:
        kept = exc
        raise
    finally:
        if book is not None:
            book.release(request_id, fp, kept)


async def _routed(router: Router, req: RouteRequest, request_id: str,
                  policy: str) -> AsyncIterator[StreamItem]:
    started = time.time()
    execution = secrets.token_hex(6)
    trace = RoutingTrace(request_id=request_id, policy=policy, context=req.context)
    deadline = started + (req.timeout or router.spec.default_timeout_s)
    records: list[Any] = []
    result: RouteResult | None = None
    error: ProviderError | None = None
    reasons: dict[str, str] = {}
    relay = _Relay()
    router.inflight += 1
    router.active.add(request_id)
    try:
        completion = req.completion()
        cache = CacheStep(router, req, policy, completion, request_id, trace)
        probe, order = cache.probe, []
        if cache.result is None:  # else this policy's answer before: no ranking, no budget
            completion, need, order, text = router._plan(req, policy, started, trace, reasons,
                                                          completion)
        async for name in cache.providers(order, deadline, reasons):
            if time.time() >= deadline:
                reasons[name] = "deadline: request deadline passed before trying it"
                break
            spec = router.providers[name]
            worst = worst_case_cost(spec, need.prompt_tokens,
                                    req.max_tokens or spec.max_output_tokens, req.n)
            try:
                res = router.ledger.reserve(name, worst, time.time())
            except ProviderError as exc:
                reasons[name] = exc.message
                continue
            call = ProviderCall(request_id=request_id, completion=completion, deadline=deadline,
                                output=req.output, attempt_offset=len(trace.attempts),
                                priority=req.priority, execution=execution, policy=policy,
                                context=req.context, user=req.user)
            relay.open(name, res, worst, need.prompt_tokens)
            router.outstanding[name] = router.outstanding.get(name, 0) + 1
            reply: ProviderReply | None = None
            try:
                source = router.stream_provider(name, call)
                try:
                    async for item in source:
                        if isinstance(item, ProviderReply):
                            reply = item
                            break
                        if not relay.begun:
                            relay.begun = True
                            yield StreamStart(request_id=request_id, provider=name,
                                              model=spec.model, policy=policy,
                                              simulated=router.snapshots[name].simulated)
                        relay.count(item)
                        yield item
                    if reply is None:
                        raise RuntimeError("the provider's stream ended without its reply")
                finally:
                    await source.aclose()
            except Exception as exc:  # the provider actor died or is unreachable
                reason = router._actor_lost(name, exc, res, worst, req, request_id, policy,
                                            trace, records, text, execution)
                relay.closed()
                if relay.begun:
                    error = ProviderError(ErrorClass.INTERNAL, reason, provider=name)
                    break
                reasons[name] = reason
                continue
            finally:
                router.outstanding[name] -= 1
            relay.closed()
            result, reason = router._take_reply(name, reply, res, req, request_id, policy,
                                                trace, records, text, execution)
            if result is not None:
                if probe is not None:
                    probe.keep(result, trace.simulated)
                break
            reasons[name] = reason or "failed"
            cls = ErrorClass(reply.error_class or ErrorClass.INTERNAL.value)
            if relay.begun or cls not in FALLBACK:  # no fallback after the first token
                error = ProviderError(cls, reason or "failed", provider=name)
                break
        if result is None:
            result = cache.result
        if result is None and error is None:
            error = cache.give_up(router, reasons)
        if result is not None and result.trace.cached:
            yield StreamStart(request_id=request_id, provider=result.provider,
                              model=result.model, policy=policy, simulated=trace.simulated,
                              cached=True)
            for ev in events_of_route(result):
                yield ev
    except ProviderError as exc:
        error = exc
    except (asyncio.CancelledError, GeneratorExit):  # the caller went away
        error = ProviderError(ErrorClass.CANCELLED, "the caller went away mid-stream")
        relay.abandoned(router, trace)
        raise
    finally:
        router.inflight -= 1
        router.active.discard(request_id)
        router._conclude(request_id, policy, req, trace, records, result, error, started)
    yield router._outcome(trace, result, error)


class _Relay:
    """The provider stream being relayed: whether the caller has tokens already, and what
    to settle the budget at if the caller goes away before the provider's usage event."""

    __slots__ = ("begun", "chars", "name", "res", "worst", "prompt")

    def __init__(self) -> None:
        self.begun = False
        self.chars = 0
        self.name: str | None = None
        self.res: Any = None
        self.worst = 0.0
        self.prompt = 0

    def open(self, name: str, res: Any, worst: float, prompt: int) -> None:
        self.name, self.res, self.worst, self.prompt, self.chars = name, res, worst, prompt, 0

    def count(self, item: Any) -> None:
        self.chars += len(getattr(item, "text", "") or getattr(item, "arguments", "") or "")

    def closed(self) -> None:
        self.name = self.res = None

    def abandoned(self, router: Router, trace: RoutingTrace) -> None:
        """Settle an open reservation at the estimate of what was sent (the provider actor
        records the billed attempt itself; its exact cost reaches the audit trail)."""
        if self.name is None or self.res is None:
            return
        spec = router.providers[self.name]
        estimate = cost_usd(spec, self.prompt, -(-self.chars // CHARS_PER_TOKEN))
        router._settle(self.res, min(estimate, self.worst), trace)
        trace.warnings.append(f"{self.name}: the caller went away mid-stream; the attempt "
                              "was billed and recorded by the provider")
        self.closed()
