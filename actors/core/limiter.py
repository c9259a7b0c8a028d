"""Client-side rate limits for one provider: a request waits for capacity rather than
earning a 429 (which costs a round trip, a retry and breaker pressure).

Two layers:

* `RateLimits` — the pure core, clock passed in. Hard guarantees: in any 60-second window
  at most `rpm` request starts and at most `tpm` tokens (reserved at start, corrected to
  the actual count on release), and never more than `max_concurrency` in flight. A sliding
  log of starts enforces the windows exactly; on top, GCRA (emission interval 60/rpm,
  small burst) spreads starts evenly so a minute's quota is not spent in the first second.
  A start is logged when capacity is granted and moved to when the request actually went
  out (`sent`): anything in between — a new connection, an event-loop stall — would
  otherwise make the provider count it later than the log does.
* `AsyncLimiter` — an asyncio wrapper: FIFO queue (no caller starves), waits up to the
  caller's deadline, hands out a `Lease` that gives capacity back on release.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError

WINDOW_S = 60.0
#: The provider counts a request when it arrives, we when it left (`sent`): network delay
#: and clock skew can put two starts we saw 60.0 s apart inside one of its windows. A
#: provider's limiter (`from_spec`) uses a window this much longer (pacing 60/61 = 98.4 %).
MARGIN_S = 1.0
_MIN_WAIT_S = 1e-6  # a positive floor, so "not yet" is never rounded to "now"
_GCRA_SLACK_S = 1e-9  # pacing is soft: ignore float dust in the theoretical arrival time


class _Grant:
    """One request start in the window; `tokens` is corrected when it is released."""

    __slots__ = ("t", "tokens", "reserved", "open")

    def __init__(self, t: float, tokens: int) -> None:
        self.t = t
        self.tokens = tokens
        self.reserved = tokens
        self.open = True  # still awaiting its release correction


class RateLimits:
    """rpm / tpm / concurrency for one provider. Not thread-safe; one event loop owns it."""

    def __init__(
        self,
        rpm: int,
        tpm: int,
        max_concurrency: int,
        *,
        burst: int | None = None,
        name: str | None = None,
        margin_s: float = 0.0,
    ) -> None:
        """`burst`: starts allowed back to back after an idle spell (default: one
        second's worth of rpm, at least 1)."""
        for key, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrency", max_concurrency)):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.name = name
        self.burst = min(rpm, burst if burst is not None else max(1, math.ceil(rpm / WINDOW_S)))
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.window_s = WINDOW_S + margin_s
        self._interval = self.window_s / rpm
        self._tolerance = (self.burst - 1) * self._interval
        self._tat: float | None = None  # GCRA theoretical arrival time
        self._grants: deque[_Grant] = deque()  # starts within the window, oldest first
        self._tokens = 0  # sum of grant tokens within the window
        self._open: dict[tuple[float, int], list[_Grant]] = {}  # for release lookups
        self.inflight = 0

    @classmethod
    def from_spec(cls, spec: ProviderSpec, *, burst: int | None = None) -> RateLimits:
        """A provider's limits, with the `MARGIN_S` safety margin on the window."""
        return cls(spec.rpm, spec.tpm, spec.max_concurrency, burst=burst, name=spec.name,
                   margin_s=MARGIN_S)

    def check(self, tokens: int) -> None:
        """Refuse at once what no amount of waiting could ever admit."""
        if tokens < 0:
            raise ProviderError(
                ErrorClass.BAD_REQUEST,
                f"token count must be >= 0, got {tokens}",
                provider=self.name,
            )
        if tokens > self.tpm:
            raise ProviderError(
                ErrorClass.CONTEXT_TOO_LONG,
                f"request needs {tokens} tokens but the tokens-per-minute limit is {self.tpm}; "
                "it can never be sent to this provider",
                provider=self.name,
            )

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        grants = self._grants
        while grants and grants[0].t <= horizon:
            g = grants.popleft()
            self._tokens -= g.tokens
            if g.open:
                self._forget(g)

    def _forget(self, g: _Grant) -> None:
        key = (g.t, g.reserved)
        same = self._open[key]
        same.remove(g)
        if not same:
            del self._open[key]
        g.open = False

    def try_acquire(self, tokens: int, now: float) -> float:
        """Start a request now if every limit allows: 0.0 if acquired, else the seconds
        until it might (``math.inf`` while concurrency is full: that waits on a release)."""
        self.check(tokens)
        self._prune(now)
        if self.inflight >= self.max_concurrency:
            return math.inf
        wait = 0.0
        if self._tat is not None:
            pace = self._tat - self._tolerance - now
            if pace > _GCRA_SLACK_S:
                wait = pace
        # Below, "blocked" is decided by the pruned log alone; the computed wait only says
        # for how long. (t + 60 - now can round to <= 0 while t > now - 60 still holds.)
        grants = self._grants
        if len(grants) >= self.rpm:
            wait = max(wait, _MIN_WAIT_S, grants[len(grants) - self.rpm].t + self.window_s - now)
        excess = self._tokens + tokens - self.tpm
        if excess > 0:
            freed = 0
            for g in grants:
                freed += g.tokens
                if freed >= excess:
                    wait = max(wait, _MIN_WAIT_S, g.t + self.window_s - now)
                    break
        if wait > 0.0:
            return wait

        self.inflight += 1
        self._tat = (now if self._tat is None else max(self._tat, now)) + self._interval
        g = _Grant(now, tokens)
        grants.append(g)
        self._tokens += tokens
        self._open.setdefault((now, tokens), []).append(g)
        return 0.0

    def sent(self, now: float, reserved_tokens: int, *, started: float) -> float:
        """The request acquired at `started` went out only at `now`: log its start there.

        Returns its new `started` (what `release` identifies it by). Moving a start later
        only ever delays others, so nobody waiting needs waking.
        """
        same = self._open.get((started, reserved_tokens))
        if not same or now <= started:
            return started  # released or out of the window already, or no time passed
        g = same.pop(0)
        if not same:
            del self._open[(started, reserved_tokens)]
        grants = self._grants
        for i in range(len(grants) - 1, -1, -1):  # a recent grant: search from the newest
            if grants[i] is g:
                del grants[i]
                break
        g.t = now
        i = len(grants)
        while i and grants[i - 1].t > now:  # keep the log in time order
            i -= 1
        grants.insert(i, g)
        self._open.setdefault((now, reserved_tokens), []).append(g)
        return now

    def release(
        self,
        now: float,
        reserved_tokens: int,
        actual_tokens: int | None = None,
        *,
        started: float | None = None,
    ) -> None:
        """Give the concurrency slot back and correct the token ledger to the actual count.

        `started` is the `now` the request was acquired at (or `sent` moved it to); it
        identifies the ledger entry.
        Without it (or `actual_tokens`) the reservation stands, which is the safe side.
        An actual count above the reservation is booked too: the provider counted it.
        """
        self.inflight = max(0, self.inflight - 1)
        self._prune(now)
        if started is None or actual_tokens is None:
            return
        same = self._open.get((started, reserved_tokens))
        if not same:
            return  # already out of the window: nothing left to correct
        g = same[0]
        self._forget(g)
        self._tokens += actual_tokens - g.tokens
        g.tokens = actual_tokens

    def snapshot(self, now: float) -> dict[str, Any]:
        self._prune(now)
        return {
            "inflight": self.inflight,
            "max_concurrency": self.max_concurrency,
            "requests_in_window": len(self._grants),
            "rpm": self.rpm,
            "tokens_in_window": self._tokens,
            "tpm": self.tpm,
        }


class Lease:
    """Capacity held by one request; give it back with `release()` or `async with`."""

    __slots__ = ("_limiter", "tokens", "started", "actual_tokens", "released")

    def __init__(self, limiter: AsyncLimiter, tokens: int, started: float) -> None:
        self._limiter = limiter
        self.tokens = tokens
        self.started = started
        self.actual_tokens: int | None = None  # set this inside `async with` if known
        self.released = False

    def sent(self) -> None:
        """The request is on the wire now: it counts against the window from here (the
        HTTP transport calls this when the body went to the socket)."""
        if not self.released:
            self.started = self._limiter._sent(self)

    def release(self, actual_tokens: int | None = None) -> None:
        """Idempotent; `actual_tokens` (input + output) corrects the tpm ledger."""
        if self.released:
            return
        self.released = True
        if actual_tokens is not None:
            self.actual_tokens = actual_tokens
        self._limiter._release(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class AsyncLimiter:
    """FIFO-fair waiting in front of a `RateLimits`, with a live lane ahead of a batch lane.

    Only the head of the queue tries to acquire; the rest wait their turn, so a large
    request is not overtaken forever by small ones. Live requests (HTTP, notebooks) queue
    ahead of batch ones (backtests), so a running backtest adds little to live latency.
    `deadline` is on `clock`'s scale.
    """

    def __init__(
        self,
        limits: RateLimits,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._live: deque[asyncio.Event] = deque()
        self._batch: deque[asyncio.Event] = deque()

    @property
    def inflight(self) -> int:
        return self.limits.inflight

    @property
    def waiting(self) -> int:
        return len(self._live) + len(self._batch)

    @property
    def waiting_batch(self) -> int:
        return len(self._batch)

    def snapshot(self) -> dict[str, Any]:
        return {**self.limits.snapshot(self._clock()), "waiting": self.waiting,
                "waiting_batch": len(self._batch)}

    def _head(self) -> asyncio.Event | None:
        if self._live:
            return self._live[0]
        return self._batch[0] if self._batch else None

    async def acquire(self, tokens: int, deadline: float | None = None,
                      priority: str = "live") -> Lease:
        """Wait for capacity. Raises ProviderError(DEADLINE) without taking any capacity
        if the deadline passes first, or as soon as the wait is known to outlast it."""
        self.limits.check(tokens)
        me = asyncio.Event()
        lane = self._batch if priority == "batch" else self._live
        lane.append(me)
        try:
            while True:
                now = self._clock()
                head = self._head() is me
                wait = self.limits.try_acquire(tokens, now) if head else math.inf
                if wait == 0.0:
                    lane.popleft()
                    self._wake_head()
                    return Lease(self, tokens, now)
                if deadline is not None:
                    left = deadline - now
                    if left <= 0 or (math.isfinite(wait) and wait > left):
                        raise ProviderError(
                            ErrorClass.DEADLINE,
                            f"rate limits leave no capacity before the deadline "
                            f"({self.limits.inflight} in flight, {self.waiting} waiting)",
                            provider=self.limits.name,
                        )
                    wait = min(wait, left)
                me.clear()
                await self._wait(me, wait)
        except BaseException:
            if me in lane:
                was_head = self._head() is me
                lane.remove(me)
                if was_head:
                    self._wake_head()
            raise

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        """Until woken (a release, or our turn came) or `timeout` elapsed."""
        if math.isinf(timeout):
            await event.wait()
            return
        woken = asyncio.ensure_future(event.wait())
        slept = asyncio.ensure_future(self._sleep(timeout))
        try:
            await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            slept.cancel()

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None:
            head.set()

    def _sent(self, lease: Lease) -> float:
        return self.limits.sent(self._clock(), lease.tokens, started=lease.started)

    def _release(self, lease: Lease) -> None:
        self.limits.release(self._clock(), lease.tokens, lease.actual_tokens, started=lease.started)
        self._wake_head()
