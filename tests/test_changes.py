"""Noticing a provider's shift in a context (CUSUM on its outcomes), alone and in the learner."""

from __future__ import annotations

import random

from actors.policy.changes import step
from actors.policy.estimates import LearningSpec, Stat
from actors.policy.learning import Learner
from tests.test_learning import feed, key

KEEP = 0.5 ** (1 / 100)  # the learner's default own-outcome half-life


def run(stat: Stat, p: float, n: int, rng: random.Random) -> list[int]:
    """Feed `n` outcomes of accuracy `p` as the learner does; the indices of changes found."""
    found = []
    for i in range(n):
        x = float(rng.random() < p)
        if step(stat, x):
            found.append(i)
        stat.score_n = stat.score_n * KEEP + 1.0
        stat.score_s = stat.score_s * KEEP + x
    return found


def test_a_drop_of_twenty_points_is_noticed_and_older_evidence_dropped():
    rng = random.Random(3)
    for p0 in (0.9, 0.7, 0.5):
        st = Stat()
        assert len(run(st, p0, 400, rng)) <= 1
        found = run(st, p0 - 0.2, 150, rng)
        assert found and found[0] < 120, (p0, found)
        # what is kept is the evidence since the change: the estimate sits near the new rate
        # at once, not a half-life later
        after = st.score_s / st.score_n
        assert abs(after - (p0 - 0.2)) < 0.1, (p0, after)


def test_a_rise_is_noticed_too():
    rng = random.Random(4)
    st = Stat()
    run(st, 0.5, 300, rng)
    assert run(st, 0.75, 150, rng)


def test_a_steady_provider_rarely_raises_a_false_alarm():
    for seed in range(3):
        rng = random.Random(seed)
        for p in (0.95, 0.8, 0.5):
            assert len(run(Stat(), p, 3000, rng)) <= 3, (seed, p)


def test_too_little_evidence_says_nothing():
    st = Stat(score_n=5.0, score_s=5.0)
    assert not any(step(st, 0.0) for _ in range(20))


def test_the_learner_follows_a_drift_within_dozens_of_outcomes():
    rng = random.Random(5)
    on, off = Learner(["a"], keys=("task",)), Learner(
        ["a"], LearningSpec(detect_changes=False), keys=("task",))
    for lr in (on, off):
        feed(lr, "a", "t", [float(rng.random() < 0.9) for _ in range(400)])
        feed(lr, "a", "t", [float(rng.random() < 0.6) for _ in range(100)], start=400)
    assert on.changes >= 1 and off.changes == 0
    assert on.belief("a", key("t")).score < 0.7  # followed
    assert off.belief("a", key("t")).score > 0.7  # half-lives behind
