"""One provider's resilience stack, in the order a request meets it:

    breaker (is the provider healthy?) → limiter (rpm / tpm / concurrency, waits up to the
    deadline) → wire client (one HTTP attempt) → output validation → breaker + window update,
    with retries (tenacity, full jitter, Retry-After) around the limiter-and-attempt part.

`Provider` is plain Python; `ProviderActor` is the thin Ray actor that owns one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from actors.clients import make_client
from actors.clients.base import Completion, Result
from actors.clients.schema import check_answer
from actors.config import ProviderSpec
from actors.core.breaker import BreakerState, CircuitBreaker
from actors.core.errors import ErrorClass, ProviderError
from actors.core.limiter import AsyncLimiter, RateLimits
from actors.core.records import AttemptRecord
from actors.core.retry import call_with_retry, retry_hop
from actors.core.snapshot import Snapshot
from actors.core.tokens import estimate_messages, estimate_tools
from actors.core.window import Outcome, RollingWindow
from actors.rpc.messages import AttemptInfo, OutputKind, ProviderCall, ProviderReply
from actors.shells.metrics import Metrics

SNAPSHOT_EVERY_S = 0.25
log = logging.getLogger(__name__)
ORPHAN_POLICY = "(router lost)"  # marks attempts recorded by the provider itself
#: Failures that say nothing about the provider's health window: refused before sending,
#: the caller's deadline, the caller's request, or the caller's output cap.
NOT_THE_PROVIDERS_OUTCOME = frozenset({
    ErrorClass.BREAKER_OPEN, ErrorClass.DEADLINE, ErrorClass.BAD_REQUEST,
    ErrorClass.CONTEXT_TOO_LONG, ErrorClass.OUTPUT_LIMIT, ErrorClass.CANCELLED})


def orphan_records(call: ProviderCall, reply: ProviderReply) -> list[AttemptRecord]:
    """Audit rows for the attempts of a reply whose router died before receiving it.

    They were billed, so they must count (spend, budgets after the router restarts); the
    request itself gets its terminal `unknown_outcome` row from the caller. No prompt or
    response text: whether to store it is the router's setting."""
    return [a.record(call.request_id, reply.provider, reply.model,
                     policy=call.policy or ORPHAN_POLICY, context=call.context, user=call.user,
                     execution=call.execution, simulated=reply.simulated)
            for a in reply.attempts]


def validate_output(kind: OutputKind, text: str) -> tuple[dict[str, Any] | None, float | None]:
    """Parse structured output; an answer that does not validate is an invalid_response."""
    if kind == "text":
        return None, None
    from prompts.outputs import RiskAssessment, TradeSignal
    from prompts.parse import OutputError, parse_output

    model = TradeSignal if kind == "trade_signal" else RiskAssessment
    try:
        parsed = parse_output(text, model)
    except OutputError as exc:
        raise ProviderError(ErrorClass.INVALID_RESPONSE, f"output is not a valid {model.__name__}: {exc}") from None
    return parsed.model_dump(mode="json"), getattr(parsed, "confidence", None)


def check_result(call: ProviderCall, completion: Completion,
                 result: Result) -> tuple[Any, float | None]:
    """The validated output of an answer and its stated confidence: the built-in models
    (TradeSignal, RiskAssessment), a JSON response_format, and the output cap for every
    request (an answer that stopped at max_tokens before anything usable is output_limit)."""
    value = check_answer(completion, result)
    parsed, confidence = validate_output(call.output, result.text)
    return (value if parsed is None else parsed), confidence


def reserve_tokens(completion: Completion) -> int:
    """Tokens a request may use, for rate limits: prompt and tools, plus every choice's cap."""
    return (estimate_messages(completion.messages) + estimate_tools(completion.tools)
            + (completion.max_tokens or 0) * completion.n)


def _finite(t: float | None) -> float | None:
    """An auth-opened breaker stays open until reset: show that as far future, not inf."""
    return None if t is None else (4102444800.0 if math.isinf(t) else t)


class Provider:
    """Breaker, limiter, retries, window and client for one configured provider."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        simulated: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.spec = spec
        self.simulated = simulated
        self.client = make_client(spec, base_url=base_url, api_key=api_key)
        self.breaker = CircuitBreaker(spec.breaker)
        self.window = RollingWindow()
        self.limiter = AsyncLimiter(RateLimits.from_spec(spec))
        self.metrics = metrics or Metrics(enabled=False)
        self._last_state = BreakerState.CLOSED
        self._last_snapshot_at = 0.0

    # -- the request path -----------------------------------------------------------------

    async def complete(self, call: ProviderCall) -> ProviderReply:
        spec = self.spec
        completion = call.completion
        if completion.max_tokens is None:
            completion = completion.model_copy(update={"max_tokens": spec.max_output_tokens})
        attempts: list[AttemptInfo] = []
        parsed_box: list[Any] = [None]
        reserve = reserve_tokens(completion)
        deadline_mono = None
        if call.deadline is not None:
            deadline_mono = time.monotonic() + (call.deadline - time.time())

        async def attempt() -> Result:
            n = call.attempt_offset + len(attempts) + 1
            now = time.time()
            if not self.breaker.allow(now):
                raise ProviderError(ErrorClass.BREAKER_OPEN, self._open_message(now),
                                    provider=spec.name)
            started = time.monotonic()
            result: Result | None = None
            try:
                async with await self.limiter.acquire(reserve, deadline_mono,
                                                     call.priority) as lease:
                    remaining = None if deadline_mono is None else deadline_mono - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise ProviderError(ErrorClass.DEADLINE, "deadline passed while waiting "
                                            "for rate-limit capacity", provider=spec.name)
                    try:
                        async with asyncio.timeout(remaining):  # no extra task, unlike wait_for
                            result = await self.client.send(completion, on_sent=lease.sent)
                    except TimeoutError:
                        raise ProviderError(ErrorClass.DEADLINE, f"no answer within the request "
                                            f"deadline ({remaining:.2f} s)", provider=spec.name) from None
                    lease.actual_tokens = result.input_tokens + result.output_tokens
                    parsed, confidence = check_result(call, completion, result)
            except ProviderError as exc:
                if exc.provider is None:
                    exc.provider = spec.name
                self._record_failure(n, exc, time.monotonic() - started, attempts, result)
                raise
            except asyncio.CancelledError:
                self.breaker.release_probe()  # a cancelled half-open probe must not wedge it
                raise
            except Exception as exc:  # a bug or an unexpected library error: classify, don't crash
                err = ProviderError(ErrorClass.INTERNAL, f"{type(exc).__name__}: {exc}", provider=spec.name)
                self._record_failure(n, err, time.monotonic() - started, attempts)
                raise err from None
            parsed_box[0] = parsed
            self._record_success(n, result, confidence, attempts)
            return result

        try:
            result = await call_with_retry(attempt, spec.retry, deadline=deadline_mono)
        except ProviderError as exc:
            return self._reply(attempts, error=exc)
        return self._reply(attempts, result=result, parsed=parsed_box[0])

    def _open_message(self, now: float) -> str:
        until = self.breaker.open_until
        if until is None or math.isinf(until):
            wait = "; needs a manual reset (llm-router reset / client.reset)"
        else:
            wait = f"; retry in {max(0.0, until - now):.1f} s"
        return f"circuit breaker is {self.breaker.state(now).value}{wait}"

    def _record_success(self, n: int, result: Result, confidence: float | None,
                        attempts: list[AttemptInfo]) -> None:
        now = time.time()
        self.breaker.record(True, now)
        self.window.add(Outcome(True, result.latency_s, result.input_tokens, result.output_tokens,
                                result.cost_usd, confidence))
        self.metrics.attempt(self.spec.name, True, None, result.latency_s, result.cost_usd,
                             result.input_tokens, result.output_tokens)
        attempts.append(AttemptInfo.billed(result, attempt=n, ts=now, ok=True,
                                           latency_s=result.latency_s, confidence=confidence))

    def _record_failure(self, n: int, exc: ProviderError, elapsed: float,
                        attempts: list[AttemptInfo], result: Result | None = None) -> None:
        """`result` is set when the provider answered (and billed) but the answer was unusable."""
        now = time.time()
        if exc.error_class is not ErrorClass.BREAKER_OPEN:
            self.breaker.record(False, now, error_class=exc.error_class, retry_after=exc.retry_after)
        tin = result.input_tokens if result else 0
        tout = result.output_tokens if result else 0
        cost = result.cost_usd if result else 0.0
        if exc.error_class not in NOT_THE_PROVIDERS_OUTCOME:
            self.window.add(Outcome(False, elapsed, tin, tout, cost))
        self.metrics.attempt(self.spec.name, False, exc.error_class.value, elapsed, cost, tin, tout)
        attempts.append(AttemptInfo.billed(
            result, attempt=n, ts=now, ok=False, error_class=exc.error_class.value,
            error=exc.message[:500], status=exc.status, latency_s=elapsed))

    def _reply(self, attempts: list[AttemptInfo], *, result: Result | None = None,
               parsed: Any = None, error: ProviderError | None = None) -> ProviderReply:
        now = time.time()
        state = self.breaker.state(now)
        changed = state is not self._last_state or now - self._last_snapshot_at >= SNAPSHOT_EVERY_S
        if state is not self._last_state:
            self.metrics.breaker(self.spec.name, state.value)
            self._last_state = state
        snap = None
        if changed:
            self._last_snapshot_at = now
            snap = self.snapshot(now).model_dump()
        return ProviderReply(
            provider=self.spec.name, model=self.spec.model, result=result, parsed=parsed,
            error_class=error.error_class.value if error else None,
            error=error.message if error else None,
            status=error.status if error else None,
            retry_after=error.retry_after if error else None,
            attempts=attempts, snapshot=snap, simulated=self.simulated,
        )

    # -- state ----------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        st = self.window.stats()
        spec = self.spec
        state = self.breaker.state(now)
        return Snapshot(
            name=spec.name, model=spec.model, api=spec.api, state=state.value,
            open_until=_finite(self.breaker.open_until) if state is BreakerState.OPEN else None,
            success_rate=1.0 if st.success_rate is None else st.success_rate,
            mean_confidence=st.mean_confidence,
            p50_s=st.p50_latency_s, p95_s=st.p95_latency_s, samples=st.count,
            input_cost_per_mtok=spec.input_cost_per_mtok, output_cost_per_mtok=spec.output_cost_per_mtok,
            max_input_tokens=spec.max_input_tokens, max_output_tokens=spec.max_output_tokens,
            inflight=self.limiter.inflight, waiting=self.limiter.waiting,
            max_concurrency=spec.max_concurrency, rpm=spec.rpm, tpm=spec.tpm,
            simulated=self.simulated, ts=now,
        )

    def status(self) -> dict[str, Any]:
        """Snapshot plus breaker detail, for people (notebook, dashboard, HTTP)."""
        now = time.time()
        out = self.snapshot(now).model_dump()
        out["breaker"] = self.breaker.snapshot(now)
        out["window"] = self.window.stats().as_dict()
        out["limits"] = self.limiter.snapshot()  # rate-limit use now: in window, waiting
        return out

    def reset(self) -> Snapshot:
        now = time.time()
        self.breaker.reset(now)
        self.metrics.breaker(self.spec.name, "closed")
        self._last_state = BreakerState.CLOSED
        return self.snapshot(now)

    async def aclose(self) -> None:
        await self.client.aclose()


# -- the thin actor ---------------------------------------------------------------------

import ray  # noqa: E402  (kept next to the actor it serves)

from actors.core.keys import Availability, availability  # noqa: E402
from actors.rpc.channel_server import ChannelServer  # noqa: E402
from actors.shells.provider_stream import stream_attempts  # noqa: E402
from actors.shells.tracker import NAME as TRACKER  # noqa: E402
from actors.shells.tracker import NAMESPACE  # noqa: E402
from actors.simulator.server import simulator_base_url  # noqa: E402


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10000)
class ProviderActor(ChannelServer):
    """`provider:<name>`: owns one Provider. A restart starts with a closed breaker.

    The router calls it through a channel (a local socket, or batched Ray calls);
    `complete` is the plain one-call form for notebooks and tests.
    """

    def __init__(self, spec: dict[str, Any], simulator_url: str | None, simulate: bool) -> None:
        import prompts.parse  # noqa: F401  (else the first answer imports it, stalling the loop)

        p = ProviderSpec.model_validate(spec)
        # The key is read here, in the process whose HTTP client uses it; whoever started
        # this actor learns the outcome from `availability()`.
        self._availability = availability(p, simulate)
        base = None
        if simulate:
            if not simulator_url:
                raise ValueError(f"provider {p.name}: simulate=True needs the simulator's URL")
            base = simulator_base_url(p.api, simulator_url)
        self._core = Provider(p, base_url=base, simulated=simulate, metrics=Metrics())
        # Spend the router's budget ledger may not know about after it restarts: calls in
        # flight (their reservation) and orphaned attempts the tracker has not taken yet.
        self._inflight: dict[int, float] = {}
        self._orphaned_usd = 0.0

    async def _chan_handle(self, call: ProviderCall) -> ProviderReply:
        key = id(call)
        self._inflight[key] = call.reserved_usd
        try:
            return await self._core.complete(call)
        finally:  # the orphan hook (if any) runs right after, with no await in between
            del self._inflight[key]

    def _chan_stream(self, call: ProviderCall) -> AsyncIterator[Any]:
        """Events as the provider sends them, then the ProviderReply; an attempt the
        caller abandons is billed and goes to the tracker from here."""
        return stream_attempts(self._core, call,
                               lambda reply: self._chan_orphan(call, True, reply))

    def _chan_orphan(self, call: Any, ok: bool, reply: Any) -> None:
        if ok and isinstance(call, ProviderCall) and isinstance(reply, ProviderReply):
            records = orphan_records(call, reply)
            if records:
                cost = sum(r.cost_usd for r in records)
                self._orphaned_usd += cost
                asyncio.ensure_future(self._send_orphans(records, cost))

    async def _send_orphans(self, records: list[AttemptRecord], cost: float,
                            tries: int = 10) -> None:
        """To the tracker directly (it may be restarting too: retry for a while)."""
        async def send() -> None:
            await ray.get_actor(TRACKER, namespace=NAMESPACE).record.remote(records)

        try:
            await retry_hop(send, tries=tries)
        except Exception as exc:
            log.warning("could not record %d orphaned attempts: %s", len(records), exc)
        finally:
            self._orphaned_usd = max(0.0, self._orphaned_usd - cost)

    def pending_usd(self) -> float:
        """Spend not yet in the audit trail: reservations of calls in flight (worst case)
        plus orphaned attempts on their way to the tracker. A restarted router books it
        against its budgets, so a predecessor's last calls cannot push spend past a cap."""
        return sum(self._inflight.values()) + self._orphaned_usd

    async def complete(self, call: ProviderCall) -> ProviderReply:
        return await self._core.complete(call)

    def snapshot(self) -> dict[str, Any]:
        return self._core.snapshot().model_dump()

    def status(self) -> dict[str, Any]:
        return self._core.status()

    def reset(self) -> dict[str, Any]:
        return self._core.reset().model_dump()

    def ready(self) -> str:
        return self._core.spec.name

    def availability(self) -> Availability:
        """Real or simulated, and whether the key was there (decided once, at start)."""
        return self._availability
