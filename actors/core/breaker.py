"""Circuit breaker for one provider: stop sending attempts to a provider that is failing.

Pure and clock-free: every call takes ``now`` (seconds, any monotonic clock), so the state
machine is tested with a fake clock and the actor just passes ``time.monotonic()``.

    closed ──(failure rate over window_s, or N failures in a row)──▶ open
    open ──(open_until passes)──▶ half_open          (never for AUTH: needs reset())
    half_open ──(probe_successes ok probes)──▶ closed
    half_open ──(a probe fails)──▶ open, for twice as long (capped at max_open_s)

Only failures whose class is in PROVIDER_FAULT count: a bad request or an oversize prompt
says nothing about the provider's health.
"""

from __future__ import annotations

import math
from collections import deque
from enum import StrEnum
from typing import Any

from actors.config import BreakerSpec
from actors.core.errors import PROVIDER_FAULT, ErrorClass


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Transition = tuple[float, BreakerState, BreakerState]


class CircuitBreaker:
    """One provider's breaker. Not thread-safe; the owning actor serializes calls."""

    def __init__(
        self,
        spec: BreakerSpec,
        *,
        max_transitions: int = 64,
        probe_timeout_s: float = 600.0,
    ) -> None:
        """`probe_timeout_s`: a probe with no outcome after this long is presumed abandoned,
        so a lost probe can never wedge half-open (600 s is the largest attempt timeout)."""
        self.spec = spec
        self._state = BreakerState.CLOSED
        self._window: deque[tuple[float, bool]] = deque()  # (time, failed), counted outcomes
        self._window_failures = 0
        self._consecutive = 0
        self._open_until: float | None = None
        self._backoff_s = spec.open_s  # doubles on each failed probe, reset on close
        self._probes: deque[float] = deque()  # start times of outstanding probes
        self._probe_timeout_s = probe_timeout_s
        self._probe_ok = 0
        self._transitions: deque[Transition] = deque(maxlen=max_transitions)
        self.transition_count = 0
        self.reason: str | None = None  # why it last opened

    # -- reading --------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        """Current state; moves open → half-open once `open_until` has passed."""
        if (
            self._state is BreakerState.OPEN
            and self._open_until is not None
            and now >= self._open_until
        ):
            self._to(BreakerState.HALF_OPEN, now)
            self._probes.clear()
            self._probe_ok = 0
        return self._state

    @property
    def open_until(self) -> float | None:
        """When an open breaker starts probing; ``math.inf`` if only `reset()` reopens it."""
        return self._open_until if self._state is BreakerState.OPEN else None

    @property
    def transitions(self) -> list[Transition]:
        """The most recent transitions, oldest first (bounded; see `transition_count`)."""
        return list(self._transitions)

    @property
    def probes_outstanding(self) -> int:
        return len(self._probes)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Compact state for the router's provider snapshot (plain JSON-able values)."""
        state = self.state(now)
        self._prune(now)
        total = len(self._window)
        until = self.open_until
        return {
            "state": state.value,
            "open_until": None if until is None or math.isinf(until) else until,
            "manual_reset": until is not None and math.isinf(until),
            "reason": self.reason,
            "window_requests": total,
            "window_failures": self._window_failures,
            "failure_rate": self._window_failures / total if total else 0.0,
            "consecutive_failures": self._consecutive,
            "probes_outstanding": len(self._probes),
            "transitions": self.transition_count,
        }

    # -- acting ---------------------------------------------------------------------------

    def allow(self, now: float) -> bool:
        """May an attempt start now? In half-open this *takes* a probe slot: report its
        outcome with `record()` or give it back with `release_probe()`."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        while self._probes and now - self._probes[0] >= self._probe_timeout_s:
            self._probes.popleft()
        if len(self._probes) >= self.spec.half_open_probes:
            return False
        self._probes.append(now)
        return True

    def release_probe(self) -> None:
        """Give back a probe slot whose attempt ended without an outcome (cancelled,
        deadline before sending, budget refusal). No-op outside half-open."""
        if self._state is BreakerState.HALF_OPEN and self._probes:
            self._probes.popleft()

    def record(
        self,
        ok: bool,
        now: float,
        *,
        error_class: ErrorClass | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Feed one attempt's outcome. A failure with no class counts as the provider's
        fault (an unclassified failure is more likely theirs than the caller's)."""
        state = self.state(now)
        counts = not ok and (error_class is None or error_class in PROVIDER_FAULT)
        if not ok and not counts:  # the caller's fault: neutral, but the probe is over
            self.release_probe()
            return
        if error_class is ErrorClass.AUTH:
            if not (state is BreakerState.OPEN and self._open_until == math.inf):
                self._open(now, math.inf, "auth")
            return

        if state is BreakerState.OPEN:
            # A straggler that started before the breaker opened; a fresh Retry-After
            # may still push the reopening later.
            if counts and retry_after is not None and self._open_until is not None:
                later = now + min(retry_after, self.spec.max_open_s)
                self._open_until = max(self._open_until, later)
            return

        if state is BreakerState.HALF_OPEN:
            self.release_probe()
            if ok:
                self._probe_ok += 1
                if self._probe_ok >= self.spec.probe_successes:
                    self._close(now)
            else:
                self._backoff_s = min(self._backoff_s * 2, self.spec.max_open_s)
                self._open(now, self._duration(retry_after), "probe_failed")
            return

        # closed
        self._prune(now)
        self._window.append((now, counts))
        if ok:
            self._consecutive = 0
            return
        self._window_failures += 1
        self._consecutive += 1
        if self._consecutive >= self.spec.consecutive_failures:
            self._open(now, self._duration(retry_after), "consecutive_failures")
        elif (
            len(self._window) >= self.spec.min_requests
            and self._window_failures / len(self._window) >= self.spec.failure_rate
        ):
            self._open(now, self._duration(retry_after), "failure_rate")

    def reset(self, now: float) -> None:
        """Close by hand (e.g. after fixing an API key); clears all history and backoff."""
        self._close(now)

    # -- internals ------------------------------------------------------------------------

    def _duration(self, retry_after: float | None) -> float:
        wanted = max(self._backoff_s, retry_after or 0.0)
        return min(wanted, self.spec.max_open_s)

    def _open(self, now: float, duration: float, reason: str) -> None:
        self._open_until = now + duration
        self.reason = reason
        self._clear_counts()
        self._to(BreakerState.OPEN, now)

    def _close(self, now: float) -> None:
        self._open_until = None
        self._backoff_s = self.spec.open_s
        self._clear_counts()
        if self._state is not BreakerState.CLOSED:
            self._to(BreakerState.CLOSED, now)

    def _clear_counts(self) -> None:
        self._window.clear()
        self._window_failures = 0
        self._consecutive = 0
        self._probes.clear()
        self._probe_ok = 0

    def _prune(self, now: float) -> None:
        horizon = now - self.spec.window_s
        window = self._window
        while window and window[0][0] <= horizon:
            _, failed = window.popleft()
            self._window_failures -= failed

    def _to(self, new: BreakerState, now: float) -> None:
        self._transitions.append((now, self._state, new))
        self.transition_count += 1
        self._state = new
