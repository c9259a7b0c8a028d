"""What each provider would score over the whole stream, had it taken every request.

The quality target is a share of the best single provider's stream score, so cost-aware
needs it, with its uncertainty: every context's posterior weighted by the context's
(decayed) traffic, plus the uncertainty of the provider's level, which every context
shares. Pure function over the learner's beliefs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from actors.policy.estimates import Belief


def stream_scores(traffic: Iterable[tuple[float, dict[str, Belief]]], providers: list[str],
                  level_var: dict[str, float],
                  ) -> tuple[dict[str, float], dict[str, float]] | None:
    """(score, standard error) per provider over `traffic` — (weight, beliefs per
    provider) per context — or None without traffic. `level_var`: the variance of each
    provider's level."""
    weights = 0.0
    acc = dict.fromkeys(providers, 0.0)
    var = dict.fromkeys(providers, 0.0)
    for w, bs in traffic:
        weights += w
        for p in providers:
            b = bs[p]
            acc[p] += w * b.score
            var[p] += w * w * b.score * (1.0 - b.score) / (b.weight + 1.0)
    if weights <= 0:
        return None
    return ({p: acc[p] / weights for p in providers},
            {p: math.sqrt(var[p] / weights**2 + level_var[p]) for p in providers})
