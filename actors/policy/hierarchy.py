"""The hierarchical prior behind the learner's estimates, fit from all contexts at once.

A provider's outcome score in a context is modelled as its level plus the context's
difficulty (shared by the providers: what one provider shows about a context informs the
others' prior there) plus a provider-specific deviation, whose spread across contexts sets
how much evidence a context needs before its own figure outweighs the prior (empirical
Bayes: method of moments on the residuals). Pure functions of `cells`: per context,
provider → (decayed evidence, mean score).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Pseudo-samples behind "this context is as hard as the average one".
DIFFICULTY_WEIGHT = 5.0
#: Bounds of the learned context weight: a handful of outcomes never outweighs the prior,
#: and a context with plenty of its own evidence is never held back by it.
MIN_CONTEXT_WEIGHT, MAX_CONTEXT_WEIGHT = 8.0, 200.0
Cell = dict[str, tuple[float, float]]
LEVEL_BOUNDS = (0.01, 0.99)


def difficulty(cell: Cell, level: dict[str, float], without: str | None = None) -> float:
    """The context's difficulty shown by its providers' evidence (all but `without`)."""
    on = od = 0.0
    for p, (n, m) in cell.items():
        if p != without:
            on += n
            od += n * (m - level.get(p, m))
    return od / (on + DIFFICULTY_WEIGHT)


def fit_levels(cells: list[Cell], providers: Iterable[str], start: dict[str, float],
               pooled: float, prior_weight: float, rounds: int = 4) -> dict[str, float]:
    """Each provider's level: alternate difficulties given levels and levels given
    difficulties (weighted least squares, the levels shrunk toward `pooled`)."""
    level = dict(start)
    for _ in range(rounds):
        diff = [difficulty(cell, level) for cell in cells]
        for p in providers:
            num, den = pooled * prior_weight, prior_weight
            for d, cell in zip(diff, cells, strict=True):
                if p in cell:
                    n, m = cell[p]
                    num += n * (m - d)
                    den += n
            # a level is a rate: a context's difficulty can push m - d past 0..1
            level[p] = min(max(num / den, LEVEL_BOUNDS[0]), LEVEL_BOUNDS[1])
    return level


def context_weights(cells: list[Cell], providers: Iterable[str], level: dict[str, float],
                    default: float) -> dict[str, float]:
    """Per provider, the prior weight (pseudo-samples) of a context's estimate: from the
    spread of its contexts around level + difficulty (shown by the others), less the
    binomial noise of those means; `default` until three contexts have evidence."""
    out = {}
    for p in providers:
        res: list[float] = []
        noise = 0.0
        for cell in cells:
            if p not in cell or cell[p][0] < 3.0:
                continue
            n, m = cell[p]
            res.append(m - level[p] - difficulty(cell, level, without=p))
            noise += 1.0 / n
        if len(res) < 3:
            out[p] = default
            continue
        pq = max(level[p] * (1.0 - level[p]), 1e-4)
        tau2 = max(sum(x * x for x in res) / len(res) - pq * noise / len(res), 1e-4)
        out[p] = min(max(pq / tau2 - 1.0, MIN_CONTEXT_WEIGHT), MAX_CONTEXT_WEIGHT)
    return out
