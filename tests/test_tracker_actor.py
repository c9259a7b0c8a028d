"""The tracker actor: a killed and restarted tracker keeps every acknowledged record."""

from __future__ import annotations

import os
import time

import pytest
import ray

from actors.core.records import AttemptRecord, RequestRecord
from actors.shells.tracker import NAME, NAMESPACE, TrackerSpec, get_or_create_tracker


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The session's Ray instance (tests/conftest.py)."""
    yield ray_cluster


def batch(i: int) -> list:
    rid, now = f"r{i}", time.time()
    return [
        AttemptRecord(request_id=rid, attempt=1, ts=now, provider="claude", model="c", ok=True,
                      input_tokens=100, output_tokens=20, cost_usd=0.01, latency_s=0.5,
                      context={"regime": "bull"}).model_dump(),
        RequestRecord(request_id=rid, ts=now, provider="claude", ok=True, attempts=1,
                      context={"regime": "bull"}, cost_usd=0.01),
    ]


def test_killed_tracker_comes_back_with_everything(cluster, tmp_path_factory) -> None:
    spec = TrackerSpec(db_path=tmp_path_factory.mktemp("tracker") / "audit.sqlite3")
    tracker = get_or_create_tracker(spec)
    try:
        assert ray.get([tracker.record.remote(batch(i)) for i in range(10)]) == [2] * 10
        ray.get(tracker.feedback.remote("r3", 0.8))
        with pytest.raises(KeyError, match="unknown request id"):
            ray.get(tracker.feedback.remote("ghost", 0.8))
        before = ray.get(tracker.performance.remote())
        assert before.loc[("claude", "*"), "attempts"] == 10
        assert get_or_create_tracker(spec) == tracker  # the same singleton

        pid = ray.get(tracker.__ray_call__.remote(lambda self: os.getpid()))
        ray.kill(tracker, no_restart=False)
        again = ray.get_actor(NAME, namespace=NAMESPACE)
        assert ray.get(again.reconcile.remote(), timeout=60) == {
            "requests": 10, "attempts": 10, "feedback": 1, "duplicates": 0,
            "rejected_feedback": 0, "invalid": 0}
        assert ray.get(again.__ray_call__.remote(lambda self: os.getpid())) != pid
        after = ray.get(again.performance.remote())
        assert after.equals(before)
        assert ray.get(again.provider_stats.remote())["claude"]["mean_score"] == 0.8
        assert ray.get(again.costs.remote("day"))["cost_usd"].sum() == pytest.approx(0.1)
        assert len(ray.get(again.audit.remote("r7"))) == 2
    finally:
        ray.kill(tracker, no_restart=True)
