"""Tracker core: durable-then-aggregate, feedback, audit rows, restart, config."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from actors.config import ConfigError
from actors.core.records import AttemptRecord, RequestRecord
from actors.shells.tracker import Tracker, TrackerSpec

NOW = 1_700_000_000.0
CTX = {"task": "analysis", "regime": "bull", "timeframe": "1h"}


def records(rid: str, provider: str = "claude", ts: float = NOW - 60, fail_first: bool = False,
            ctx: dict | None = None) -> list:
    out: list = []
    n = 1
    if fail_first:
        out.append(AttemptRecord(request_id=rid, attempt=1, ts=ts, provider="gpt", model="g",
                                 ok=False, error_class="timeout", context=ctx or {},
                                 cost_usd=0.001, input_tokens=100, latency_s=30.0))
        n = 2
    out.append(AttemptRecord(request_id=rid, attempt=n, ts=ts, provider=provider, model="c",
                             policy="cost-aware", context=ctx or {}, ok=True, input_tokens=100,
                             output_tokens=50, cost_usd=0.01, latency_s=0.8, confidence=0.7,
                             prompt="what now?", response="buy"))
    out.append(RequestRecord(request_id=rid, ts=ts, provider=provider, model="c", ok=True,
                             attempts=n, context=ctx or {}, cost_usd=0.01 + 0.001 * (n - 1)))
    return out


@pytest.fixture
def spec(tmp_path: Path) -> TrackerSpec:
    return TrackerSpec(db_path=tmp_path / "t" / "audit.sqlite3", min_context_samples=3)


def make(spec: TrackerSpec) -> Tracker:
    return Tracker(spec, clock=lambda: NOW)


def test_record_batch_counts_only_new_records(spec: TrackerSpec) -> None:
    t = make(spec)
    assert t.record_batch(records("r1", fail_first=True)) == 3
    assert t.record_batch([r.model_dump() for r in records("r1", fail_first=True)]) == 0
    assert t.record_batch([{"kind": "attempt", "request_id": "bad"}]) == 0  # dropped, logged
    assert t.reconcile() == {"requests": 1, "attempts": 2, "feedback": 0, "duplicates": 3,
                             "rejected_feedback": 0, "invalid": 1}
    assert t.performance().loc[("claude", "*"), "attempts"] == 1  # not counted twice


def test_audit_rows(spec: TrackerSpec) -> None:
    t = make(spec)
    t.record_batch(records("r1", fail_first=True, ctx=CTX))
    t.feedback("r1", 1.0)
    rows = t.audit("r1")
    assert [r["kind"] for r in rows] == ["attempt", "attempt", "request", "feedback"]
    a = rows[1]
    for key in ("request_id", "ts", "context", "policy", "provider", "attempt", "error_class",
                "input_tokens", "output_tokens", "cost_usd", "latency_s", "prompt", "response"):
        assert key in a
    assert (a["context"], a["prompt"], rows[0]["error_class"]) == (CTX, "what now?", "timeout")
    with pytest.raises(KeyError, match="unknown request id 'nope'"):
        t.audit("nope")


def test_feedback_validation_and_effect(spec: TrackerSpec) -> None:
    t = make(spec)
    t.record_batch(records("r1"))
    with pytest.raises(KeyError, match="unknown request id 'ghost'"):
        t.feedback("ghost", 0.5)
    with pytest.raises(ValueError, match="0..1"):
        t.feedback("r1", 1.5)
    t.feedback("r1", 0.4)
    assert t.provider_stats()["claude"]["mean_score"] == pytest.approx(0.4)


def test_provider_stats_switch_to_context(spec: TrackerSpec) -> None:
    t = make(spec)
    t.record_batch(records("g1", fail_first=True))
    for i in range(2):
        t.record_batch(records(f"c{i}", ctx=CTX))
    assert t.provider_stats(CTX)["claude"]["source"] == "global"
    t.record_batch(records("c2", ctx=CTX))
    stats = t.provider_stats(CTX)
    assert stats["claude"]["source"] == "context" and stats["claude"]["samples"] == 3
    assert stats["gpt"]["source"] == "global" and stats["gpt"]["success_rate"] == 0.0


def test_costs_spend_and_budgets(spec: TrackerSpec) -> None:
    t = make(spec)
    t.record_batch(records("r1", ts=NOW - 2 * 3600, fail_first=True))
    t.record_batch(records("r2", provider="gpt"))
    assert t.costs("hour")["cost_usd"].sum() == pytest.approx(0.021)
    assert t.costs("day")["cost_usd"].sum() == pytest.approx(0.021)
    with pytest.raises(ValueError, match="hour, day"):
        t.costs("minute")
    assert t.spend_since(NOW - 3600) == pytest.approx(0.01)
    assert t.spend_since(NOW - 86400, provider="claude") == pytest.approx(0.01)
    assert t.spend_since(NOW - 3 * 3600) == pytest.approx(0.021)
    assert t.cost_per_token().loc[("claude", "c"), "tokens"] == 150


def test_restart_rebuilds_same_figures(spec: TrackerSpec) -> None:
    t = make(spec)
    for i in range(5):
        t.record_batch(records(f"r{i}", fail_first=i % 2 == 0, ctx=CTX if i > 1 else None))
    t.feedback("r3", 0.9)
    t.record_batch(records("r1"))
    before, counts = t.performance(by_context=True), t.reconcile()
    t.close()
    t2 = make(spec)
    pd.testing.assert_frame_equal(before, t2.performance(by_context=True))
    assert t2.reconcile() == counts


def test_spec_from_config(tmp_path: Path) -> None:
    s = TrackerSpec.from_config({"db_path": "~/x/a.db", "store_text": "hash"})
    assert s.db_path == Path.home() / "x" / "a.db"
    assert TrackerSpec.from_config(None).db_path.is_absolute()
    with pytest.raises(ConfigError, match=r"tracker\.store_text"):
        TrackerSpec.from_config({"store_text": "gzip"})
    with pytest.raises(ConfigError, match=r"tracker\.db: unknown key"):
        TrackerSpec.from_config({"db": "x"})
