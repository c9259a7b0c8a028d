"""The price of quality: what one unit of outcome score is worth, in USD, for one target.

`cost-aware` picks the provider with the highest `value × expected score − expected cost`.
A caller may say the value outright (`outcome_value_usd`); or name a `quality_target` — a
fraction of what the best single provider would achieve over the stream — and the value is
the Lagrange multiplier of that constraint, kept here and moved by outcomes:

- the deficit: realized outcomes of the requests routed to the target, against target ×
  the expected score the best single provider would have had on them (re-evaluated with
  current estimates at every refresh, so early estimates leave no lasting error; decayed
  with the learner's global half-life, so it is bounded and holds over a long horizon);
- the price: re-solved at every refresh as the lowest value at which the greedy choice
  over recent traffic (each request's context and prompt length) is expected to reach the
  target plus the deficit spread over the next `repay_requests` requests. So the price
  follows both the estimates (at once) and realized outcomes (what they missed).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

#: Most the deficit may raise or lower the quality asked of the next requests.
MAX_CORRECTION = 0.05


class QualityPrice:
    """One multiplier per distinct quality target (plain state)."""

    __slots__ = ("target", "repay", "value", "updates", "deficit", "realized", "by_provider",
                 "counts", "max_keys", "tick", "counts_tick")

    def __init__(self, target: float, *, initial: float = 1.0, repay_requests: float = 1000.0,
                 max_keys: int = 2000) -> None:
        if not 0.0 < target <= 1.0:
            raise ValueError(f"quality_target must be within (0, 1], got {target}")
        self.target = target
        self.repay = repay_requests
        self.value = initial  # USD per unit of outcome score
        self.updates = 0
        self.deficit = 0.0  # expected-best × target − realized, summed (decayed)
        self.realized = 0.0  # decayed sum of realized scores
        self.by_provider: dict[str, float] = {}  # ... of those answered by each provider
        # decayed outcomes per (context, provider that answered)
        self.counts: OrderedDict[tuple[Any, str], float] = OrderedDict()
        self.max_keys = max_keys
        self.tick = 0.0  # learner clock the sums were last aged to
        self.counts_tick = 0.0  # ... and the per-context counts (aged only when repricing)

    def age(self, tick: float, ln_rate: float) -> None:
        """Decay the sums to the learner's clock `tick`."""
        if tick > self.tick:
            f = math.exp(-(tick - self.tick) * ln_rate)
            self.deficit *= f
            self.realized *= f
            for p in self.by_provider:
                self.by_provider[p] *= f
            self.tick = tick

    def add(self, key: Any, provider: str, expected_best: float, realized: float) -> None:
        """One outcome of a request routed to this target, in context `key`, answered by
        `provider` (`expected_best`: what the best single provider would score there)."""
        ck = (key, provider)
        self.counts[ck] = self.counts.pop(ck, 0.0) + 1.0
        while len(self.counts) > self.max_keys:
            self.counts.popitem(last=False)
        self.realized += realized
        self.by_provider[provider] = self.by_provider.get(provider, 0.0) + realized
        self.deficit += self.target * expected_best - realized
        self.updates += 1

    def replace(self, provider: str, old: float, new: float) -> None:
        """A request's outcome was corrected."""
        self.realized += new - old
        self.by_provider[provider] = self.by_provider.get(provider, 0.0) + new - old
        self.deficit += old - new

    def reprice(self, best: str | None, expected_best: Callable[[Any], float], tick: float,
                ln_rate: float) -> None:
        """Re-evaluate the deficit with current estimates: where the best single provider
        answered, its realized outcomes; elsewhere, its expected score there."""
        self.age(tick, ln_rate)
        f = math.exp(-(tick - self.counts_tick) * ln_rate)
        self.counts_tick = tick
        total = self.by_provider.get(best, 0.0) if best is not None else 0.0
        for ck in self.counts:
            self.counts[ck] *= f
            if ck[1] != best:
                total += self.counts[ck] * expected_best(ck[0])
        self.deficit = self.target * total - self.realized

    def solve(self, quality: np.ndarray, cost: np.ndarray, best: int, se: float = 0.0,
              margin: float = 0.0) -> None:
        """The price from recent traffic: `quality[i, j]`, `cost[i, j]` of request i at
        provider j; column `best` is the best single provider, whose expected score is
        uncertain by `se` (aimed at optimistically: it is what makes the router learn the
        best provider early, and a small margin once it is known)."""
        if quality.size == 0:
            return
        goal = (self.target + margin) * (float(quality[:, best].mean()) + se)
        goal += min(max(self.deficit / self.repay, -MAX_CORRECTION), MAX_CORRECTION)
        rows = np.arange(len(quality))

        def reached(v: float) -> bool:
            pick = np.argmax(v * quality - cost, axis=1)
            return float(quality[rows, pick].mean()) >= goal

        spread = float(cost.max() - cost.min()) or 1e-9
        lo, hi = spread * 1e-3, spread * 1e4
        if reached(lo):
            self.value = lo
            return
        if not reached(hi):
            self.value = hi
            return
        for _ in range(40):  # bisection in log space: the lowest price that reaches the goal
            mid = math.sqrt(lo * hi)
            if reached(mid):
                hi = mid
            else:
                lo = mid
        self.value = hi


def plan(recent: Iterable[tuple[Any, int]], beliefs: dict[Any, list[Any]],
         token_prices: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Expected quality (success × score) and cost of each recent request (context key,
    prompt tokens) at each provider, from the providers' beliefs per context and their
    prices (USD per 1M input, output tokens): what `QualityPrice.solve` solves over."""
    recent = list(recent)
    width = len(token_prices)
    pin = np.array([p[0] for p in token_prices])
    pout = np.array([p[1] for p in token_prices])
    quality = np.array([[b.success * b.score for b in beliefs[k]] for k, _ in recent]
                       ).reshape(-1, width)
    out = np.array([[b.output_tokens for b in beliefs[k]] for k, _ in recent]).reshape(-1, width)
    tokens = np.array([t for _, t in recent], dtype=float)[:, None]
    return quality, (tokens * pin + out * pout) / 1e6


def initial_value(costs: list[float], gain: float = 0.1) -> float:
    """A starting price from the providers' costs for a typical request: the premium of the
    priciest over the cheapest buys `gain` of score. Only until the first refresh."""
    spread = max(costs) - min(costs) if costs else 0.0
    return max(spread, max(costs, default=0.0) * 0.1, 1e-9) / gain
