"""Rolling statistics over a provider's recent attempts, the numbers a snapshot is built from.

`add()` is O(1) (running sums over a fixed ring); percentiles are computed on read and
cached until the next add, because the router reads far less often than attempts finish.
Running float sums are rebuilt from the ring once per lap so they cannot drift. Realized
outcomes (feedback) are not kept here: the router learns them (actors/policy/learning.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished attempt as the window sees it."""

    ok: bool
    latency_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    confidence: float | None = None  # the answer's own confidence, 0..1


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A window's numbers at one moment. ``None`` means "no evidence yet", not zero."""

    count: int
    successes: int
    success_rate: float | None
    mean_latency_s: float | None  # successful attempts only, like the percentiles
    p50_latency_s: float | None
    p95_latency_s: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_per_1k_tokens: float | None
    mean_confidence: float | None
    confidence_count: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of an already sorted list."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


class RollingWindow:
    """The last `size` attempts of one provider."""

    def __init__(self, size: int = 256) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._ring: list[Outcome | None] = [None] * size
        self._size = size
        self._next = 0
        self._count = 0
        self._latencies: list[float] | None = None  # sorted success latencies, cached
        self._zero()

    def _zero(self) -> None:
        self._successes = 0
        self._latency_sum = 0.0
        self._input_tokens = 0
        self._output_tokens = 0
        self._cost = 0.0
        self._conf_sum = 0.0
        self._conf_count = 0

    def _apply(self, o: Outcome, sign: int) -> None:
        if o.ok:
            self._successes += sign
            self._latency_sum += sign * o.latency_s
        self._input_tokens += sign * o.input_tokens
        self._output_tokens += sign * o.output_tokens
        self._cost += sign * o.cost_usd
        if o.confidence is not None:
            self._conf_sum += sign * o.confidence
            self._conf_count += sign

    def add(self, outcome: Outcome) -> None:
        """Record one finished attempt, evicting the oldest when full. O(1) amortized."""
        old = self._ring[self._next]
        if old is not None:
            self._apply(old, -1)
        else:
            self._count += 1
        self._ring[self._next] = outcome
        self._apply(outcome, +1)
        self._next = (self._next + 1) % self._size
        if self._next == 0:  # once per lap: rebuild sums so float error cannot accumulate
            self._zero()
            for o in self._ring:
                if o is not None:
                    self._apply(o, +1)
        self._latencies = None

    # -- reading --------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._count

    @property
    def successes(self) -> int:
        return self._successes

    @property
    def success_rate(self) -> float | None:
        return self._successes / self._count if self._count else None

    @property
    def mean_latency(self) -> float | None:
        return self._latency_sum / self._successes if self._successes else None

    @property
    def mean_confidence(self) -> float | None:
        return self._conf_sum / self._conf_count if self._conf_count else None

    @property
    def cost_per_1k_tokens(self) -> float | None:
        tokens = self._input_tokens + self._output_tokens
        return self._cost * 1000.0 / tokens if tokens else None

    def _sorted_latencies(self) -> list[float]:
        if self._latencies is None:
            self._latencies = sorted(o.latency_s for o in self._ring if o is not None and o.ok)
        return self._latencies

    @property
    def p50(self) -> float | None:
        lat = self._sorted_latencies()
        return percentile(lat, 50) if lat else None

    @property
    def p95(self) -> float | None:
        lat = self._sorted_latencies()
        return percentile(lat, 95) if lat else None

    def stats(self) -> WindowStats:
        return WindowStats(
            count=self._count,
            successes=self._successes,
            success_rate=self.success_rate,
            mean_latency_s=self.mean_latency,
            p50_latency_s=self.p50,
            p95_latency_s=self.p95,
            input_tokens=self._input_tokens,
            output_tokens=self._output_tokens,
            cost_usd=self._cost,
            cost_per_1k_tokens=self.cost_per_1k_tokens,
            mean_confidence=self.mean_confidence,
            confidence_count=self._conf_count,
        )
