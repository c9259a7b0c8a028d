"""The lean chaos run: HTTP through Serve and a backtest at once, faults and kills on a
schedule, then the same invariants as scripts/chaos.py (nothing lost or duplicated, spend
within budget, no 429 caused by the router, every killed actor back)."""

from __future__ import annotations

import asyncio

from actors.chaos import run_chaos


def test_lean_chaos_keeps_every_invariant(ray_cluster, tmp_path):
    check(asyncio.run(run_chaos(tmp_path, duration_s=36, http_concurrency=3, bars=60,
                                down_s=8, log=lambda _m: None)))


def test_lean_chaos_on_postgresql_keeps_the_same_invariants(ray_cluster, tmp_path, pg_url):
    """The audit trail and the router's state in a real PostgreSQL: the tracker and the
    router killed mid-run take their leases over at once, and the reconciliation reads the
    same invariants through the store interface."""
    check(asyncio.run(run_chaos(tmp_path, duration_s=36, http_concurrency=3, bars=60,
                                down_s=8, log=lambda _m: None, db_url=pg_url)))


def check(report) -> None:
    print(report.table())
    assert report.ok, report.problems
    assert report.http.get("200", 0) > 50 and report.backtest["stored"] == 60
    assert report.lost == 0 and report.duplicated == 0 and report.router_429s == 0
    assert set(report.recovery_s) == {"provider:llama", "tracker", "router", "serve replica"}
    assert all(v is not None for v in report.recovery_s.values())
    assert report.budget_usd is not None and report.spend_usd <= report.budget_usd + 1e-9
    assert any(k.startswith("402") for k in report.http)  # the budget did run out
