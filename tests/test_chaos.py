"""The lean chaos run: HTTP through Serve and a backtest at once, faults and kills on a
schedule, then the same invariants as scripts/chaos.py (nothing lost or duplicated, spend
within budget, no 429 caused by the router, every killed actor back) — on SQLite, and on a
real PostgreSQL (tests/pg_server.py) in a Ray instance of its own, whose workers inherit
the database password."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from actors.chaos import run_chaos
from actors.reconcile import report_json
from tests.jobs import run_job

ENV_URL = "LLM_ROUTER_TEST_DB_URL"
LEAN = dict(duration_s=36, http_concurrency=3, bars=60, down_s=8)


def test_lean_chaos_keeps_every_invariant(ray_cluster, tmp_path):
    report = asyncio.run(run_chaos(tmp_path, log=lambda _m: None, **LEAN))
    print(report.table())
    check(json.loads(report_json(report)) | {"stored": report.backtest.get("stored")})


def test_lean_chaos_on_postgresql_keeps_the_same_invariants(tmp_path, pg_url, monkeypatch):
    """The audit trail and the router's state in PostgreSQL: the tracker and the router
    killed mid-run take their leases over at once (same actors, next epoch), and the
    reconciliation reads the same invariants through the store interface. (It once left
    bars unfinished — their retries spent on the restarting router, then refused by the
    budget step — and overspent: tests/test_router_recovery.py, test_chaos_steps.py. And
    HTTP stalled after the replica kill: the router's restart failed the surviving
    replica's health check as a *crash*, so Serve stopped it too: tests/test_serve_health.py.)"""
    monkeypatch.setenv(ENV_URL, pg_url)
    check(run_job(__file__, tmp_path, timeout=900))


def check(r: dict) -> None:
    assert r["ok"], r["problems"]
    assert r["http"].get("200", 0) > 50 and r["stored"] == 60
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["router_429s"] == 0
    assert set(r["recovery_s"]) == {"provider:llama", "tracker", "router", "serve replica"}
    assert all(v is not None for v in r["recovery_s"].values())
    assert r["budget_usd"] is not None and r["spend_usd"] <= r["budget_usd"] + 1e-9
    assert any(k.startswith("402") for k in r["http"])  # the budget did run out


def _job(tmp: Path) -> dict:
    import ray

    from serve.ingress import INGRESS_ENV

    os.environ.update(INGRESS_ENV["proxy"])  # Serve's start-up patience, as `llm-router serve`
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="llm-router",
             log_to_driver=False)
    try:
        report = asyncio.run(run_chaos(tmp, log=lambda _m: None, db_url=os.environ[ENV_URL],
                                       **LEAN))
    finally:
        ray.shutdown()
    print(report.table(), file=sys.stderr)
    return json.loads(report_json(report)) | {"stored": report.backtest.get("stored")}


if __name__ == "__main__":
    print(json.dumps(_job(Path(sys.argv[1]))))
