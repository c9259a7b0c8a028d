"""The prior every context's provider scores are drawn from, learned from all contexts at once.

Each provider's outcome score in a context is modelled as drawn from a normal — the
provider's level and how much contexts differ for it — mixed with a wide twin for the few
contexts unlike the rest (a provider 30 points off its usual figure). Whether a context is
one of those is one flag per context, shared by its providers. Fitted by EM over every
context's decayed evidence: the routing decisions that decided which provider was tried
where depend only on earlier outcomes, so this likelihood stays valid under adaptive
routing, where raw per-context means do not (a context that looked bad early is tried less
and stays looking bad).

A context's posterior is then the prior updated by its own evidence (binomial outcomes
taken as normal with their sampling variance): a thin context leans on the provider's
level, a well-tried one on its own figures, and an outlier is believed once its evidence is
clear instead of being pulled back to the crowd.

Providers are not coupled (round 5 measured a covariance across providers: a provider's
drift then read as "this context got harder" and the drift test failed; uncoupled was
better at equal score too — BENCHMARKS.md). All contexts are computed at once
with numpy at each refresh; one context on the decision path on plain floats
(`posterior_one`: numpy's per-call cost on five numbers is most of a decision's budget).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

#: Share of contexts assumed unlike the rest, how much wider their spread is (variance),
#: and the least it is (sd 0.2: a context may sit anywhere, however alike the others are).
OUTLIER_SHARE, OUTLIER_WIDTH, OUTLIER_MIN_VARIANCE = 0.1, 9.0, 0.04
#: Floor and ceiling of a score's per-outcome variance (a 3-of-3 context is not certain).
MIN_PQ, MAX_PQ = 0.02, 0.25
#: Smallest spread of a provider's scores across contexts (sd 0.05). With a handful of
#: contexts, EM lets the wide twin take every context off the centre and shrinks the main
#: component onto the rest (round 6: sd 0.015 fitted on ten contexts whose true sd is 0.09,
#: so every context was pinned to the level by ~600 pseudo-outcomes).
MIN_VARIANCE = 0.0025
#: How far apart providers' levels are taken to be before evidence (sd 0.1): a provider's
#: level is drawn toward the providers' common one as if by this prior. Without it a
#: level rests on however few contexts have evidence — one failed outcome in one context
#: walked a provider's level from 0.7 to 0.12 over repeated fits (it was never tried again).
LEVEL_VARIANCE = 0.01
#: Largest spread of the main component (sd 0.2, the wide twin's least): with evidence in
#: one or two contexts far from the level, EM would otherwise widen it without bound.
MAX_VARIANCE = 0.04
_LOG_SHARE, _LOG_REST = math.log(OUTLIER_SHARE), math.log(1.0 - OUTLIER_SHARE)


class Prior(NamedTuple):
    mean: np.ndarray  # (P,) the providers' levels over contexts
    var: np.ndarray  # (P,) how much contexts differ for each


def initial(providers: int, level: float, spread: float = 0.1) -> Prior:
    """A vague prior before any fit: every provider at `level`, contexts differing by
    `spread`."""
    return Prior(np.full(providers, float(level)), np.full(providers, spread**2))


def _noise(level):
    """Per-outcome variance of a provider's scores, from its level: never from the
    context's own mean, which would weigh a lucky 3-of-3 above an unlucky 0-of-3."""
    return np.clip(level * (1.0 - level), MIN_PQ, MAX_PQ)


def _wide(v):
    """The wide twin's variance."""
    return v * OUTLIER_WIDTH + OUTLIER_MIN_VARIANCE


class Flat(NamedTuple):
    """The prior as plain lists for the decision path: level, variance, the wide twin's
    variance, per-outcome variance, per provider."""

    mean: list[float]
    var: list[float]
    wide: list[float]
    noise: list[float]


def flat(prior: Prior) -> Flat:
    return Flat(prior.mean.tolist(), prior.var.tolist(), _wide(prior.var).tolist(),
                _noise(prior.mean).tolist())


def _parts(mu, v, wide, nprec, x):
    """Each provider in each context (arrays): the posterior mean and
    variance under each component, and how much likelier the main one makes the observed
    mean than the wide one (log ratio). `nprec` is the observed mean's precision
    (n / per-outcome variance; 0 where unobserved, which leaves the prior and adds 0)."""
    dx = x - mu
    a = 1.0 + v * nprec
    b = 1.0 + wide * nprec
    # log N(x; mu, v + 1/nprec) − log N(x; mu, wide + 1/nprec)
    ratio = 0.5 * (dx * dx * nprec * (1.0 / b - 1.0 / a) + np.log(b / a))
    return mu + dx * v * nprec / a, v / a, mu + dx * wide * nprec / b, wide / b, ratio


def _outlier(ratio: np.ndarray) -> np.ndarray:
    """Probability of the wide component from the log ratios summed over providers."""
    return 1.0 / (1.0 + np.exp(np.clip(_LOG_REST - _LOG_SHARE + ratio, -50.0, 50.0)))


def _mix(r, m1, v1, m2, v2):
    """The posterior of the two-component mixture, `r` the wide one's probability."""
    m = (1.0 - r) * m1 + r * m2
    return m, (1.0 - r) * (v1 + (m1 - m) ** 2) + r * (v2 + (m2 - m) ** 2)


class Posterior(NamedTuple):
    mean: np.ndarray  # (K, P) posterior mean score per context and provider
    var: np.ndarray  # (K, P) its variance
    outlier: np.ndarray  # (K,) probability the context is one of the wide ones


def _all(prior: Prior, n: np.ndarray, x: np.ndarray):
    parts = _parts(prior.mean, prior.var, _wide(prior.var), n / _noise(prior.mean), x)
    return parts, _outlier(parts[4].sum(1))


def posterior(prior: Prior, n: np.ndarray, mean: np.ndarray) -> Posterior:
    """Every context's posterior under the prior (with its wide twin); `n` and `mean` are
    (contexts, providers), `n == 0` where a provider has no evidence in a context."""
    n = np.asarray(n, dtype=float)
    x = np.clip(np.asarray(mean, dtype=float), 0.0, 1.0)
    if n.size == 0:
        return Posterior(np.zeros(n.shape), np.zeros(n.shape), np.zeros(len(n)))
    (m1, v1, m2, v2, _), r = _all(prior, n, x)
    m, var = _mix(r[:, None], m1, v1, m2, v2)
    return Posterior(np.clip(m, 0.0, 1.0), var, r)


def posterior_one(prior: Flat, n: list[float], x: list[float],
                  ) -> tuple[list[float], list[float]]:
    """One context's posterior means and variances on plain floats: `_parts`, `_outlier`
    and `_mix` written out for the decision path, where calling them per provider costs
    twice the arithmetic (tests/test_shared_prior.py holds the two forms equal)."""
    log = math.log
    d = _LOG_REST - _LOG_SHARE
    rows = []
    for mu, v, wide, pq, k, xi in zip(*prior, n, x, strict=True):
        if k <= 0.0:  # no evidence: the prior under each component
            rows.append((mu, v, mu, wide))
            continue
        nprec = k / pq
        dx = (0.0 if xi < 0.0 else 1.0 if xi > 1.0 else xi) - mu
        a = 1.0 + v * nprec
        b = 1.0 + wide * nprec
        d += 0.5 * (dx * dx * nprec * (1.0 / b - 1.0 / a) + log(b / a))
        rows.append((mu + dx * v * nprec / a, v / a, mu + dx * wide * nprec / b, wide / b))
    r = 1.0 / (1.0 + math.exp(-50.0 if d < -50.0 else 50.0 if d > 50.0 else d))
    q = 1.0 - r
    means, variances = [], []
    for m1, v1, m2, v2 in rows:
        m = q * m1 + r * m2
        means.append(0.0 if m < 0.0 else 1.0 if m > 1.0 else m)
        variances.append(q * (v1 + (m1 - m) ** 2) + r * (v2 + (m2 - m) ** 2))
    return means, variances


def fit(prior: Prior, n: np.ndarray, mean: np.ndarray, iters: int = 5) -> Prior:
    """EM from `prior` (warm start): each context weighs as one draw, its main-component
    share as the E-step says; each level has a prior at the providers' common one
    (LEVEL_VARIANCE), so a provider with evidence in one or two contexts keeps a sensible
    level however often it is refitted."""
    n = np.asarray(n, dtype=float)
    x = np.clip(np.asarray(mean, dtype=float), 0.0, 1.0)
    seen = (n > 0).any(1)
    if seen.sum() < 3:
        return prior
    n, x = n[seen], x[seen]
    for _ in range(iters):
        (m1, v1, _, _, _), r = _all(prior, n, x)
        w = 1.0 - r  # typical-context weight
        total = w.sum()
        w = w / total
        # MAP: the contexts' mean, drawn toward the providers' common level as a prior
        # with LEVEL_VARIANCE says (a few thin contexts no longer decide a level alone)
        data = total / prior.var
        mu = (data * (w @ m1) + prior.mean.mean() / LEVEL_VARIANCE) / (data + 1.0 / LEVEL_VARIANCE)
        var = np.clip(w @ ((m1 - mu) ** 2 + v1), MIN_VARIANCE, MAX_VARIANCE)
        prior = Prior(np.clip(mu, 0.01, 0.99), var)
    return prior
