"""Chaos reconciliation over a hand-made audit trail, without Ray, on both audit backends
(SQLite and a real PostgreSQL, tests/pg_server.py): the same invariants read through the
store interface."""

from __future__ import annotations

import time

import pandas as pd

from actors.core.records import AttemptRecord, RequestRecord
from tools.reconcile import audit_invariants

NOW = time.time()


def trail(backend):
    store = backend()
    att = dict(ts=NOW, provider="p", model="m", ok=True, cost_usd=0.01)
    store.write_batch([
        AttemptRecord(request_id="ok-1", attempt=1, **att),
        RequestRecord(request_id="ok-1", ts=NOW, ok=True, attempts=1),
        AttemptRecord(request_id="orphan", attempt=1, **att),   # reached a provider, no outcome
        AttemptRecord(request_id="bar-1", attempt=1, **att),
        AttemptRecord(request_id="bar-1", attempt=1, execution="again", **att),  # routed twice
        RequestRecord(request_id="bar-1", ts=NOW, ok=True, attempts=1),
        AttemptRecord(request_id="old", attempt=1, **(att | {"ts": NOW - 7200})),  # last hour
        RequestRecord(request_id="old", ts=NOW - 7200, ok=True, attempts=1),
    ])
    return store


def test_clean_trail_holds(backend):
    store = trail(backend)
    bars = pd.DataFrame({"key": ["b1"], "request_id": ["bar-1"]})
    check = audit_invariants(store, [("ok-1", "200"), ("x", "402 budget_exceeded")], bars, 1.0,
                             now=NOW)
    assert check.lost == 1 and "1 requests have attempt rows" in check.problems[0]  # the orphan
    assert check.duplicated == 0 and abs(check.spend_usd - 0.04) < 1e-12  # this hour only
    assert check.http == {"200": 1, "402 budget_exceeded": 1}


def test_lost_answers_duplicate_bars_and_overspend_are_reported(backend):
    store = trail(backend)
    bars = pd.DataFrame({"key": ["b1", "b1", "b2"], "request_id": ["bar-1", "bar-1", "nope"]})
    check = audit_invariants(store, [("ghost", "200")], bars, 0.02, now=NOW)
    text = "; ".join(check.problems)
    assert "ghost answered but has 0 terminal rows" in text
    assert "1 backtest bars stored twice" in text
    assert "1 stored bars without exactly one terminal audit row" in text
    assert "spend $0.0400 above the budget $0.0200" in text
    assert check.lost == 3  # ghost + orphan + the bar with no row
