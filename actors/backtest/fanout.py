"""How much backtest work is in flight, and (optionally) which provider gets each bar.

Why a bounded asyncio window in the driver, not Ray Data: the expensive step is an I/O-bound
call into the one router actor, whose real limit is the providers' rate limits — outside
Ray's resource model, so Ray Data's CPU/GPU-based back-pressure cannot see it, and its
blocks would put results in the object store that must come back to the driver anyway for
the exactly-once bookkeeping (journal, Parquet, feedback). A window of W requests awaited
on the client's batched channel costs the driver microseconds each, and W follows from
Little's law: enough in flight to keep every provider busy at its rate limit,

    W = Σ_p min(max_concurrency_p, ceil(rpm_p / 60 × latency × 1.25)) (at least 4)

with latency the providers' observed p95 (2 s before any sample). Work beyond what the
providers can start right now waits in the provider actors' limiters in the *batch* lane,
so live requests still go first there, and nothing is ever sent faster than the limits
allow — the window only bounds memory and queueing, the limiters guarantee the rates.
"""

from __future__ import annotations

import math

from actors.config import Config

DEFAULT_LATENCY_S = 2.0


def window_size(config: Config, latency_s: float | None = None, headroom: float = 1.25) -> int:
    lat = max(DEFAULT_LATENCY_S, latency_s or 0.0)
    total = 0
    for p in config.providers:
        if p.enabled:
            total += min(p.max_concurrency, math.ceil(p.rpm / 60.0 * lat * headroom))
    return max(4, total)


class RateShare:
    """Pins each bar to the provider that would finish it first: the one with the fewest
    outstanding bars per unit of rate limit, argmin (outstanding + 1) / rpm, the others
    (largest rpm first) as fallbacks.

    With every provider keeping pace this is a share in proportion to rpm; when one falls
    behind — live traffic using part of its limit, retries, a slow spell — its queue grows
    and new bars go elsewhere, so all queues drain together and the run has no long tail.
    Used when throughput matters more than the policy's choice (`assign: rate-share`); the
    router still applies breakers, budgets, limits and fallback to every request.
    """

    def __init__(self, config: Config) -> None:
        self.weights = {p.name: p.rpm for p in config.providers if p.enabled}
        if not self.weights:
            raise ValueError("no enabled provider to share the work between")
        self.outstanding = dict.fromkeys(self.weights, 0)
        self._order = sorted(self.weights, key=lambda n: -self.weights[n])
        self._down: set[str] = set()

    def set_down(self, names: set[str]) -> None:
        """Providers whose breaker is open get no new bars until it closes (their share
        would otherwise all land on the first fallback and queue there)."""
        self._down = set(names) if set(names) != set(self.weights) else set()

    def next(self) -> tuple[str, list[str]]:
        """A provider for the next bar; call `done(provider)` when its request ends."""
        live = [n for n in self._order if n not in self._down]
        pick = min(live, key=lambda n: (self.outstanding[n] + 1) / self.weights[n])
        self.outstanding[pick] += 1
        return pick, [n for n in self._order if n != pick]

    def done(self, provider: str) -> None:
        self.outstanding[provider] = max(0, self.outstanding[provider] - 1)
