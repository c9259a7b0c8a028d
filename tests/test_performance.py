"""Performance aggregates: success rate, percentiles, context-vs-global switch, feedback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from actors.core.contexts import context_key, label
from actors.core.performance import Performance
from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord
from actors.stores.audit import AuditStore

BULL = {"task": "analysis", "regime": "bull", "timeframe": "1h", "symbol": "BTC"}


def attempt(rid: str, provider: str = "claude", ctx: dict | None = None, **kw) -> AttemptRecord:
    base = dict(request_id=rid, attempt=1, ts=1.0, provider=provider, model="m", ok=True,
                context=ctx or {}, input_tokens=600, output_tokens=400, cost_usd=0.002,
                latency_s=1.0)
    return AttemptRecord(**(base | kw))


def request(rid: str, provider: str = "claude", ctx: dict | None = None) -> RequestRecord:
    return RequestRecord(request_id=rid, ts=1.0, provider=provider, ok=True, attempts=1,
                         context=ctx or {})


def test_context_key_is_canonical_and_ignores_other_keys() -> None:
    assert context_key(BULL) == (("task", "analysis"), ("regime", "bull"), ("timeframe", "1h"))
    same = {"timeframe": "1h", "regime": "bull", "task": "analysis"}
    assert context_key(same) == context_key(BULL)
    assert context_key({"symbol": "BTC"}) == context_key(None) == ()
    # a value with the old separator is still one value (nothing parses the key back)
    assert context_key({"regime": "a|b=c"}) == (("regime", "a|b=c"),)
    assert label(context_key(BULL)) == "task=analysis|regime=bull|timeframe=1h"


def test_contexts_are_bounded_least_recently_used_dropped() -> None:
    p = Performance(max_contexts=3)
    for i in range(50):  # random regimes must not grow the aggregates without bound
        p.add(attempt(f"r{i}", ctx={"regime": f"r{i}"}))
    assert len(p.table(by_context=True)) == 1 + 3
    assert p.stats_for("claude")["samples"] == 50  # the global figure keeps everything


def test_success_rate_latency_and_cost() -> None:
    p = Performance(window_size=10)
    for i in range(20):
        p.add(attempt(f"r{i}", latency_s=float(i), confidence=0.5))
    p.add(attempt("f1", ok=False, error_class="server", latency_s=99.0))
    p.add(attempt("f2", ok=False, error_class="bad_request"))  # caller's fault: not counted
    s = p.stats_for("claude")
    assert s["samples"] == 21 and s["attempts"] == 22
    assert s["success_rate"] == pytest.approx(20 / 21)
    assert s["p50_s"] == pytest.approx(14.5)  # over the last 10 ok latencies, 10..19
    assert s["mean_latency_s"] == pytest.approx(9.5)
    assert s["mean_confidence"] == pytest.approx(0.5)
    assert s["cost_per_1k_tokens"] == pytest.approx(0.002)
    assert s["source"] == "global"


def test_context_figures_take_over_at_min_samples() -> None:
    p = Performance(min_context_samples=5)
    for i in range(10):
        p.add(attempt(f"g{i}", ok=False, error_class="timeout"))  # globally poor
    for i in range(4):
        p.add(attempt(f"c{i}", ctx=BULL))
    s = p.stats_for("claude", BULL)
    assert (s["source"], s["context"]) == ("global", "*")
    assert s["success_rate"] == pytest.approx(4 / 14)
    p.add(attempt("c4", ctx=BULL))
    s = p.stats_for("claude", BULL)
    assert (s["source"], s["samples"], s["success_rate"]) == ("context", 5, 1.0)
    assert s["context"] == "task=analysis|regime=bull|timeframe=1h"
    assert p.stats_for("claude", {"regime": "bear"})["source"] == "global"
    assert p.stats_for("unknown")["samples"] == 0


def test_feedback_lands_on_the_answering_provider_and_context() -> None:
    p = Performance(min_context_samples=1)
    p.add(attempt("r1", ctx=BULL))
    p.add(request("r1", ctx=BULL))
    assert p.add_feedback(FeedbackRecord(request_id="r1", ts=2.0, score=0.25))
    assert p.add_feedback(FeedbackRecord(request_id="r1", ts=3.0, score=0.75), previous=0.25)
    assert not p.add_feedback(FeedbackRecord(request_id="ghost", ts=2.0, score=1.0))
    for ctx in (None, BULL):
        s = p.stats_for("claude", ctx)
        assert (s["mean_score"], s["score_samples"]) == (0.75, 1)


def test_table_rows() -> None:
    p = Performance()
    p.add(attempt("r1", ctx=BULL))
    p.add(attempt("r2", provider="gpt"))
    t = p.table()
    assert list(t.index) == [("claude", "*"), ("gpt", "*")]
    t = p.table(by_context=True)
    assert ("claude", label(context_key(BULL))) in t.index and len(t) == 3


def test_rebuild_from_store_gives_same_table(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "a.db")
    live = Performance(window_size=16, max_tracked_requests=2)  # most ids evicted
    recs: list = []
    for i in range(30):
        ctx = BULL if i % 2 else {}
        ok = i % 7 != 0
        recs += [attempt(f"r{i}", ctx=ctx, ok=ok, error_class=None if ok else "timeout",
                         latency_s=0.1 * i, confidence=0.6 if ok else None),
                 request(f"r{i}", ctx=ctx)]
    live.apply(store.store(recs), lookup=store)
    fb = [FeedbackRecord(request_id=f"r{i}", ts=5.0, score=(i % 3) / 2) for i in range(0, 30, 4)]
    live.apply(store.store(fb), lookup=store)
    assert live.stats_for("claude")["score_samples"] == len(fb)  # resolved through the store
    again = Performance(window_size=16, max_tracked_requests=2)
    again.rebuild_from(store)
    pd.testing.assert_frame_equal(live.table(by_context=True), again.table(by_context=True))
