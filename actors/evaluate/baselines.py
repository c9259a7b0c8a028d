"""What a policy is compared with, computed from the outcome table in hindsight.

- each single provider;
- a random mix of the best single provider and the cheapest one, in the proportion that
  reaches the quality target (what "just send some share to the cheap one" gets);
- the per-context hindsight oracle: knowing every context's accuracy per provider, the
  cheapest per-context assignment reaching the target (the linear programme's optimum,
  found by sweeping the price of quality; one context may be split at the boundary).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.config import Config
from actors.core.contexts import label
from actors.core.cost import cost_usd
from actors.evaluate.table import OutcomeTable


@dataclass(frozen=True)
class Point:
    name: str
    score: float  # mean outcome score over the stream
    cost_usd: float


def costs(table: OutcomeTable, config: Config) -> dict[str, np.ndarray]:
    """Per provider, what each request would cost there."""
    specs = {p.name: p for p in config.providers}
    out = {}
    for n in table.providers:
        s = specs[n]
        out[n] = np.array([cost_usd(s, int(a), int(b)) for a, b in
                           zip(table.prompt_tokens, table.output_tokens[n], strict=True)])
    return out


def singles(table: OutcomeTable, cost: dict[str, np.ndarray]) -> list[Point]:
    return [Point(n, float(table.outcomes[n].mean()), float(cost[n].sum()))
            for n in table.providers]


def best_single(points: list[Point]) -> Point:
    """Highest score; the cheaper one on a tie."""
    return max(points, key=lambda p: (p.score, -p.cost_usd))


def random_mix(points: list[Point], target: float) -> Point:
    """Best and cheapest single providers mixed at random to reach `target` × best score."""
    best = best_single(points)
    cheap = min(points, key=lambda p: p.cost_usd)
    goal = target * best.score
    if cheap.score >= goal or best.score <= cheap.score:
        return Point("random mix", cheap.score, cheap.cost_usd)
    share = (goal - cheap.score) / (best.score - cheap.score)
    return Point("random mix", goal, share * best.cost_usd + (1 - share) * cheap.cost_usd)


def oracle(table: OutcomeTable, cost: dict[str, np.ndarray], keys: tuple[str, ...],
           target: float) -> Point:
    """Cheapest per-context assignment (hindsight accuracies) reaching `target` × best."""
    names = table.providers
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(table.contexts):
        groups.setdefault(label(tuple((k, c[k]) for k in keys if c.get(k))), []).append(i)
    idx = [np.array(v) for v in groups.values()]
    acc = np.array([[table.outcomes[n][ix].sum() for n in names] for ix in idx])  # (ctx, prov)
    cst = np.array([[cost[n][ix].sum() for n in names] for ix in idx])
    goal = target * best_single(singles(table, cost)).score * len(table)

    def assign(lam: float) -> tuple[float, float]:
        pick = np.argmax(lam * acc - cst, axis=1)
        rows = np.arange(len(idx))
        return float(acc[rows, pick].sum()), float(cst[rows, pick].sum())

    lo, hi = 0.0, 1.0
    while assign(hi)[0] < goal and hi < 1e12:
        hi *= 4
    for _ in range(200):  # the largest price that misses the goal, the smallest that meets it
        mid = (lo + hi) / 2
        if assign(mid)[0] >= goal:
            hi = mid
        else:
            lo = mid
    (a0, c0), (a1, c1) = assign(lo), assign(hi)
    if a1 <= a0 or a0 >= goal:
        return Point("hindsight oracle", a1 / len(table), c1)
    f = (goal - a0) / (a1 - a0)  # split the one context between them
    return Point("hindsight oracle", goal / len(table), c0 + f * (c1 - c0))
