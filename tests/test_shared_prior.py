"""The prior shared by contexts: fitted from their evidence, updating each one (numpy, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.policy.shared_prior import (
    MAX_VARIANCE,
    MIN_VARIANCE,
    Prior,
    fit,
    flat,
    initial,
    posterior,
    posterior_one,
)


def draw(rng: np.random.Generator, levels, sds, contexts: int, per: int):
    """Binomial evidence for `contexts` contexts whose true scores are normal around
    `levels` with spreads `sds` (one column per provider)."""
    truth = np.clip(rng.normal(levels, sds, (contexts, len(levels))), 0.02, 0.98)
    n = np.full(truth.shape, float(per))
    return truth, n, rng.binomial(per, truth) / per


def test_the_float_form_equals_the_array_form():
    rng = np.random.default_rng(0)
    prior = Prior(rng.uniform(0.5, 0.9, 5), rng.uniform(0.003, 0.03, 5))
    n = rng.integers(0, 60, (40, 5)).astype(float)
    n[rng.random((40, 5)) < 0.3] = 0.0  # providers without evidence in a context
    x = np.where(n > 0, rng.random((40, 5)), 0.0)
    x[0, 0], x[1, 1] = 1.3, -0.2  # out of range: both clip
    every = posterior(prior, n, x)
    for k in range(40):
        means, variances = posterior_one(flat(prior), n[k].tolist(), x[k].tolist())
        assert means == pytest.approx(every.mean[k].tolist(), abs=1e-12)
        assert variances == pytest.approx(every.var[k].tolist(), abs=1e-12)


def test_the_fit_recovers_each_providers_level_and_spread():
    rng = np.random.default_rng(1)
    _, n, x = draw(rng, [0.8, 0.68], [0.1, 0.08], 60, 40)
    got = fit(initial(2, 0.7), n, x, iters=30)
    assert got.mean == pytest.approx([0.8, 0.68], abs=0.03)
    assert np.sqrt(got.var) == pytest.approx([0.1, 0.08], rel=0.35)


def test_a_few_contexts_do_not_collapse_the_spread():
    # ten contexts, two far off: EM would let the wide twin take them and shrink the rest
    rng = np.random.default_rng(2)
    _, n, x = draw(rng, [0.8], [0.01], 10, 50)
    x[:2, 0] = [0.35, 0.4]
    got = fit(initial(1, 0.7), n, x, iters=30)
    assert got.var[0] >= MIN_VARIANCE


def test_thin_contexts_lean_on_the_level_clear_outliers_are_believed():
    prior = Prior(np.array([0.8]), np.array([0.005]))
    thin = posterior(prior, np.array([[3.0]]), np.array([[1 / 3]]))
    assert 0.6 < thin.mean[0, 0] < 0.8  # one hit in three: pulled back, not believed
    clear = posterior(prior, np.array([[200.0]]), np.array([[0.3]]))
    assert clear.mean[0, 0] < 0.35 and clear.outlier[0] > 0.99  # one of the wide ones
    none = posterior(prior, np.array([[0.0]]), np.array([[0.0]]))
    assert none.mean[0, 0] == pytest.approx(0.8)  # no evidence: the level


def test_one_outcome_does_not_decide_a_providers_level():
    # the strong provider failed once in one context and was never tried again; refit at
    # every refresh, its level walked from 0.7 to 0.12 (so it was never tried again)
    rng = np.random.default_rng(3)
    _, n, x = draw(rng, [0.7, 0.68], [0.1, 0.1], 57, 40)
    n[:, 0], x[:, 0] = 0.0, 0.0
    n[0, 0] = 1.0
    prior = initial(2, 0.7)
    for _ in range(300):  # refreshes without new evidence
        prior = fit(prior, n, x)
    assert prior.mean[0] > 0.6  # (it was 0.25)
    assert prior.var[0] <= MAX_VARIANCE
    assert prior.mean[1] == pytest.approx(0.68, abs=0.03)  # the evidence still decides
