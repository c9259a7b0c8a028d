"""Retries, built on tenacity: of one request on one provider, and of one internal hop.

Only retryable ProviderErrors are retried; backoff is exponential with full jitter, but a
provider's Retry-After is a floor (retrying sooner would just earn another 429). Retrying
stops at `max_attempts`, or as soon as the next backoff would end past the deadline: the
caller is better served by falling back to another provider than by a late answer.

An internal hop (a record to a tracker that may be restarting) is retried on any error
with a capped exponential backoff (`retry_hop`, `retry_hop_sync`): the same rule for the
async and the blocking callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from actors.config import RetrySpec
from actors.core.errors import ErrorClass, ProviderError

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
OnAttempt = Callable[[int, ProviderError | None, float], None]


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class WaitRetryAfter(wait_base):
    """Full-jitter exponential backoff, but never shorter than the error's retry_after."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._jitter = wait_random_exponential(multiplier=base_s, max=max_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self._jitter(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(backoff, retry_after) if retry_after is not None else backoff


class StopBeforeDeadline(stop_base):
    """Stop when sleeping the upcoming backoff would already reach the deadline."""

    def __init__(self, deadline: float | None, clock: Clock) -> None:
        self._deadline = deadline
        self._clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._deadline is None:
            return False
        return self._clock() + retry_state.upcoming_sleep >= self._deadline


def build_retrying(
    spec: RetrySpec,
    *,
    deadline: float | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """An AsyncRetrying for `spec` that re-raises the last ProviderError itself."""
    return AsyncRetrying(
        retry=retry_if_exception(_retryable),
        wait=WaitRetryAfter(spec.base_s, spec.max_s),
        stop=stop_after_attempt(spec.max_attempts) | StopBeforeDeadline(deadline, clock),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    spec: RetrySpec,
    *,
    deadline: float | None,
    on_attempt: OnAttempt | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> T:
    """Run `fn` (one attempt) until it succeeds or retrying stops; return its result.

    `deadline` is on `clock`'s scale. `on_attempt(n, error, wait_s)` runs once per attempt
    with the backoff before the next one (0.0 when there is none).
    """
    if deadline is not None and clock() >= deadline:
        raise ProviderError(ErrorClass.DEADLINE, "deadline passed before the first attempt")
    # The first attempt runs outside tenacity: it is the common case, and tenacity's set-up
    # (inspect calls, state objects) is measurable on the hot path (BENCHMARKS.md).
    attempts = 1
    try:
        result = await fn()
    except ProviderError as exc:
        if not exc.retryable or spec.max_attempts <= 1:
            if on_attempt is not None:
                on_attempt(1, exc, 0.0)
            raise
        replay: list[ProviderError] = [exc]
    else:
        if on_attempt is not None:
            on_attempt(1, None, 0.0)
        return result

    async def once() -> T:
        nonlocal attempts
        if replay:  # tenacity's attempt 1 is the failure we already had
            raise replay.pop()
        attempts += 1
        return await fn()

    def before_sleep(rs: RetryCallState) -> None:
        if on_attempt is not None and rs.outcome is not None:
            on_attempt(rs.attempt_number, rs.outcome.exception(), rs.upcoming_sleep)  # type: ignore[arg-type]

    retrying = build_retrying(
        spec, deadline=deadline, clock=clock, sleep=sleep, before_sleep=before_sleep
    )
    try:
        result = await retrying(once)
    except ProviderError as exc:
        if on_attempt is not None:
            on_attempt(attempts, exc, 0.0)
        raise
    if on_attempt is not None:
        on_attempt(attempts, None, 0.0)
    return result


def _hop(tries: int, base_s: float, max_s: float) -> dict[str, Any]:
    """The one rule of an internal hop: `tries` attempts, waits of base_s, 2·base_s, …
    capped at max_s, the last error re-raised."""
    return {"stop": stop_after_attempt(tries), "reraise": True,
            "wait": wait_exponential(multiplier=base_s, max=max_s)}


async def retry_hop(fn: Callable[[], Awaitable[T]], *, tries: int, base_s: float = 0.5,
                    max_s: float = 5.0, sleep: Sleep = asyncio.sleep) -> T:
    """Run `fn` until it succeeds or `tries` attempts failed (then its last error)."""
    return await AsyncRetrying(sleep=sleep, **_hop(tries, base_s, max_s))(fn)


def retry_hop_sync(fn: Callable[[], T], *, tries: int, base_s: float = 0.5, max_s: float = 5.0,
                   sleep: Callable[[float], None] = time.sleep) -> T:
    """The blocking twin of `retry_hop`."""
    return Retrying(sleep=sleep, **_hop(tries, base_s, max_s))(fn)


def retrying_request(retries: int, retryable: Callable[[BaseException], bool],
                     before_sleep: Callable[[RetryCallState], None] | None = None,
                     ) -> AsyncRetrying:
    """A whole routed request sent again (a backtest's bar, under a new id each time):
    while `retryable` says so, up to `retries` more times, waiting 1, 2, 4 … s (≤ 30 s)."""
    return AsyncRetrying(retry=retry_if_exception(retryable), before_sleep=before_sleep,
                         **_hop(retries + 1, 1.0, 30.0))
