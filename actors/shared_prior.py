"""The prior every context's provider scores are drawn from, learned from all contexts at once.

A context's outcome scores across providers (one vector per context) are modelled as drawn
from a multivariate normal — each provider's level, how much contexts differ for it, and how
the providers move together (a context hard for one is usually hard for the others) — mixed
with a wide twin of it for the few contexts unlike the rest (a provider 30 points behind its
usual lead). Fitted by EM over every context's decayed evidence: the routing decisions that
decided which provider was tried where depend only on earlier outcomes, so this likelihood
stays valid under adaptive routing, where raw per-context means do not (a context that looked
bad early is tried less and stays looking bad).

A context's posterior is then the prior updated by its own evidence (binomial outcomes taken
as normal with their sampling variance): a thin context leans on what its other providers
show, a well-tried one on its own figures, and an outlier is believed once its evidence is
clear instead of being pulled back to the crowd. Pure numpy over arrays; `n` and `mean` are
(contexts, providers) with `n == 0` where a provider has no evidence in a context.
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
#: Whether a context's providers move together in the prior (round 5: coupling them made a
#: provider's drift read as "the context got harder" and failed the drift test; uncoupled
#: measured better at equal score too — BENCHMARKS.md, routing round 5).
COUPLED = False
#: Smallest variance of any provider across contexts (keeps the fit well-posed).
MIN_VARIANCE = 1e-4


class Prior(NamedTuple):
    mean: np.ndarray  # (P,) the providers' levels over contexts
    cov: np.ndarray  # (P, P) how contexts differ, and how providers move together


def initial(providers: int, level: float, spread: float = 0.1, together: float = 0.5) -> Prior:
    """A vague prior before any fit: every provider at `level`, contexts differing by
    `spread`, providers correlated `together`."""
    cov = np.full((providers, providers), together * spread**2)
    np.fill_diagonal(cov, spread**2)
    return Prior(np.full(providers, float(level)), cov)


class Posterior(NamedTuple):
    mean: np.ndarray  # (K, P) posterior mean score per context and provider
    var: np.ndarray  # (K, P) its variance
    outlier: np.ndarray  # (K,) probability the context is one of the wide ones


def _component(prior: Prior, n: np.ndarray, x: np.ndarray, pq: np.ndarray, widen: float,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean (K,P), covariance (K,P,P) and log marginal likelihood (K,) of the
    observed means under one normal component (the prior's covariance × `widen`)."""
    k, p = n.shape
    cov = prior.cov * widen
    if widen > 1.0:
        cov = cov + np.eye(p) * OUTLIER_MIN_VARIANCE
    prec0 = np.linalg.inv(cov)
    obs = n > 0
    noise_prec = np.where(obs, n / pq, 0.0)  # 1 / sampling variance of each observed mean
    prec = np.broadcast_to(prec0, (k, p, p)).copy()
    prec[:, np.arange(p), np.arange(p)] += noise_prec
    post_cov = np.linalg.inv(prec)
    rhs = (prec0 @ prior.mean)[None, :] + noise_prec * x
    m = np.einsum("kij,kj->ki", post_cov, rhs)
    # log N(x_obs; mean_obs, cov_obs + V_obs), by completing the square (one formula for
    # every pattern of missing providers)
    quad = (noise_prec * x * x).sum(1) + prior.mean @ prec0 @ prior.mean \
        - np.einsum("ki,kij,kj->k", m, prec, m)
    _, logdet_prec = np.linalg.slogdet(prec)
    _, logdet_cov = np.linalg.slogdet(cov)
    log_v = np.where(obs, np.log(np.where(obs, pq / np.maximum(n, 1e-12), 1.0)), 0.0).sum(1)
    ll = -0.5 * (quad + log_v + logdet_cov + logdet_prec)
    return m, post_cov, ll


def _pq(prior: Prior, n: np.ndarray) -> np.ndarray:
    """Per-outcome variance of each provider's scores, from its level: never from the
    context's own mean, which would weigh a lucky 3-of-3 above an unlucky 0-of-3."""
    pq = np.clip(prior.mean * (1.0 - prior.mean), MIN_PQ, MAX_PQ)
    return np.broadcast_to(pq, n.shape)


def posterior(prior: Prior, n: np.ndarray, mean: np.ndarray) -> Posterior:
    """Every context's posterior under the prior (with its wide twin)."""
    n = np.asarray(n, dtype=float)
    x = np.clip(np.asarray(mean, dtype=float), 0.0, 1.0)
    if n.size == 0:
        return Posterior(np.zeros(n.shape), np.zeros(n.shape), np.zeros(len(n)))
    pq = _pq(prior, n)
    m1, c1, l1 = _component(prior, n, x, pq, 1.0)
    m2, c2, l2 = _component(prior, n, x, pq, OUTLIER_WIDTH)
    a = math.log(1.0 - OUTLIER_SHARE) + l1
    b = math.log(OUTLIER_SHARE) + l2
    r = 1.0 / (1.0 + np.exp(np.clip(a - b, -50.0, 50.0)))
    m = (1.0 - r)[:, None] * m1 + r[:, None] * m2
    var = ((1.0 - r)[:, None] * (np.diagonal(c1, axis1=1, axis2=2) + (m1 - m) ** 2)
           + r[:, None] * (np.diagonal(c2, axis1=1, axis2=2) + (m2 - m) ** 2))
    return Posterior(np.clip(m, 0.0, 1.0), var, r)


def fit(prior: Prior, n: np.ndarray, mean: np.ndarray, iters: int = 5) -> Prior:
    """EM from `prior` (warm start): each context weighs as one draw, its wide-component
    share as the E-step says."""
    n = np.asarray(n, dtype=float)
    x = np.clip(np.asarray(mean, dtype=float), 0.0, 1.0)
    seen = (n > 0).any(1)
    if seen.sum() < 3:
        return prior
    n, x = n[seen], x[seen]
    for _ in range(iters):
        pq = _pq(prior, n)
        m1, c1, l1 = _component(prior, n, x, pq, 1.0)
        _, _, l2 = _component(prior, n, x, pq, OUTLIER_WIDTH)
        a = math.log(1.0 - OUTLIER_SHARE) + l1
        b = math.log(OUTLIER_SHARE) + l2
        w = 1.0 - 1.0 / (1.0 + np.exp(np.clip(a - b, -50.0, 50.0)))  # typical-context weight
        w = w / w.sum()
        mu = w @ m1
        d = m1 - mu
        cov = np.einsum("k,ki,kj->ij", w, d, d) + np.einsum("k,kij->ij", w, c1)
        cov[np.diag_indices_from(cov)] = np.maximum(np.diagonal(cov), MIN_VARIANCE)
        if not COUPLED:
            cov = np.diag(np.diagonal(cov))
        prior = Prior(np.clip(mu, 0.01, 0.99), cov)
    return prior
