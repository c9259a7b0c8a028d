"""RollingWindow: running sums checked against a from-scratch recomputation."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from actors.core.window import Outcome, RollingWindow, WindowStats, percentile


def ok(lat: float, **kw) -> Outcome:
    return Outcome(ok=True, latency_s=lat, **kw)


def bad(lat: float = 1.0, **kw) -> Outcome:
    return Outcome(ok=False, latency_s=lat, **kw)


def test_empty_window_reports_no_evidence():
    w = RollingWindow(8)
    s = w.stats()
    assert s.count == 0 and s.successes == 0
    for field in (
        "success_rate",
        "mean_latency_s",
        "p50_latency_s",
        "p95_latency_s",
        "cost_per_1k_tokens",
        "mean_confidence",
    ):
        assert getattr(s, field) is None, field


def test_basic_sums():
    w = RollingWindow(10)
    w.add(ok(1.0, input_tokens=100, output_tokens=50, cost_usd=0.003, confidence=0.8))
    w.add(ok(3.0, input_tokens=200, output_tokens=150, cost_usd=0.005))
    w.add(bad(30.0, confidence=0.2))
    assert w.count == 3
    assert w.successes == 2
    assert w.success_rate == pytest.approx(2 / 3)
    assert w.mean_latency == pytest.approx(2.0)  # failures' latency (timeouts) excluded
    assert w.mean_confidence == pytest.approx(0.5)
    assert w.cost_per_1k_tokens == pytest.approx(0.008 * 1000 / 500)


def test_eviction_drops_oldest():
    w = RollingWindow(3)
    w.add(bad(cost_usd=1.0, input_tokens=1000, confidence=0.0))
    for _ in range(3):
        w.add(ok(2.0, cost_usd=0.5, input_tokens=500, confidence=1.0))
    s = w.stats()
    assert s.count == 3
    assert s.success_rate == 1.0
    assert s.cost_usd == pytest.approx(1.5)
    assert s.input_tokens == 1500
    assert s.mean_confidence == 1.0
    assert s.confidence_count == 3


def test_confidence_none_is_not_zero():
    w = RollingWindow(4)
    w.add(ok(1.0, confidence=None))
    assert w.mean_confidence is None
    w.add(ok(1.0, confidence=0.9))
    w.add(ok(1.0, confidence=None))
    assert w.mean_confidence == pytest.approx(0.9)


def test_percentiles_match_numpy_on_successes_only():
    rng = random.Random(7)
    w = RollingWindow(50)
    outcomes = [Outcome(ok=rng.random() < 0.8, latency_s=rng.expovariate(1.0)) for _ in range(137)]
    for o in outcomes:
        w.add(o)
    kept = [o.latency_s for o in outcomes[-50:] if o.ok]
    assert w.p50 == pytest.approx(float(np.percentile(kept, 50)))
    assert w.p95 == pytest.approx(float(np.percentile(kept, 95)))
    assert w.p95 >= w.p50


def test_percentile_cache_invalidated_by_add():
    w = RollingWindow(10)
    w.add(ok(1.0))
    assert w.p95 == 1.0
    w.add(ok(3.0))
    assert w.p95 == pytest.approx(2.9)
    assert w.p50 == pytest.approx(2.0)


def test_percentile_helper():
    assert percentile([5.0], 95) == 5.0
    assert percentile([0.0, 10.0], 50) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_running_sums_agree_with_recomputation_over_many_laps():
    rng = random.Random(1)
    size = 32
    w = RollingWindow(size)
    history: list[Outcome] = []
    for i in range(5000):
        o = Outcome(
            ok=rng.random() < 0.7,
            latency_s=rng.uniform(0.01, 5.0),
            input_tokens=rng.randrange(0, 4000),
            output_tokens=rng.randrange(0, 1000),
            cost_usd=rng.uniform(0, 0.05),
            confidence=rng.random() if rng.random() < 0.5 else None,
        )
        w.add(o)
        history.append(o)
        if i % 97 == 0 or i == 4999:
            last = history[-size:]
            good = [x for x in last if x.ok]
            confs = [x.confidence for x in last if x.confidence is not None]
            s = w.stats()
            assert s.count == len(last)
            assert s.successes == len(good)
            assert s.input_tokens == sum(x.input_tokens for x in last)
            assert s.output_tokens == sum(x.output_tokens for x in last)
            assert s.cost_usd == pytest.approx(sum(x.cost_usd for x in last), abs=1e-12)
            if good:
                assert s.mean_latency_s == pytest.approx(
                    sum(x.latency_s for x in good) / len(good), rel=1e-9
                )
            if confs:
                assert s.mean_confidence == pytest.approx(sum(confs) / len(confs), rel=1e-9)
            assert s.confidence_count == len(confs)


def test_stats_is_frozen_and_dictable():
    w = RollingWindow(4)
    w.add(ok(1.0, input_tokens=10, output_tokens=10, cost_usd=0.02))
    s = w.stats()
    assert isinstance(s, WindowStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.count = 5  # type: ignore[misc]
    d = s.as_dict()
    assert d["count"] == 1 and d["cost_per_1k_tokens"] == pytest.approx(1.0)
    assert set(d) == {f.name for f in dataclasses.fields(WindowStats)}


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        RollingWindow(0)
