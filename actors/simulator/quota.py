"""A model's account limits (rpm / tpm) over a sliding 60 s window, as a vendor enforces them.

The router's own limiter is meant to keep it under these; the simulator counts every 429 it
gives for this reason separately (``rate_limited_by_limit``) so a test can check for zero.
Tokens counted are input + actual output, so a caller budgeting input + max_tokens is safe.
"""

from __future__ import annotations

from collections import deque

WINDOW_S = 60.0


class Quota:
    """Admitted attempts of one model in the last minute. The clock is passed in."""

    def __init__(self) -> None:
        self._log: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def _expire(self, now: float) -> None:
        log = self._log
        while log and log[0][0] <= now - WINDOW_S:
            self._tokens -= log.popleft()[1]

    def admit(self, now: float, tokens: int, rpm: int | None, tpm: int | None) -> float | None:
        """Record the attempt and return None, or return seconds until it would fit."""
        self._expire(now)
        wait = 0.0
        if rpm is not None and len(self._log) >= rpm:
            wait = self._log[len(self._log) - rpm][0] + WINDOW_S - now
        if tpm is not None and self._tokens + tokens > tpm:
            if tokens > tpm:
                wait = max(wait, WINDOW_S)  # never fits; tell the caller to go elsewhere
            else:
                excess = self._tokens + tokens - tpm
                for t, n in self._log:
                    excess -= n
                    if excess <= 0:
                        wait = max(wait, t + WINDOW_S - now)
                        break
        if wait > 0:
            return wait
        self._log.append((now, tokens))
        self._tokens += tokens
        return None
