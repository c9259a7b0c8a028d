"""Chaos and load in one bounded run (loopback only): HTTP through Serve and a backtest at
once, while the schedule injects simulator faults (429 bursts, 500s, 529s, timeouts, malformed
bodies, a provider dead for a minute), kills a provider actor, the tracker, the router and a
Serve replica, and lets a budget run out. Prints the reconciliation table; exits 1 if any
invariant fails.

    .venv/bin/python scripts/chaos.py [--duration 150] [--http 6] [--bars 600] [--json out.json]
        [--db-url postgresql://USER@HOST:PORT/DB]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=150.0, help="seconds of load and faults")
    ap.add_argument("--http", type=int, default=6, help="concurrent HTTP clients")
    ap.add_argument("--bars", type=int, default=600, help="bars in the concurrent backtest")
    ap.add_argument("--down", type=float, default=60.0, help="seconds one provider is dead")
    ap.add_argument("--latency-scale", type=float, default=0.05)
    ap.add_argument("--workdir", default=None, help="keep the audit DB and runs here")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--db-url", default=None,
                    help="keep the audit trail and router state in this PostgreSQL database "
                         "(postgresql://USER@HOST:PORT/DB; password from $LLM_ROUTER_DB_PASSWORD) "
                         "instead of SQLite in the workdir")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from actors.chaos import run_chaos
    from actors.reconcile import report_json
    from serve.ingress import INGRESS_ENV

    os.environ.update(INGRESS_ENV["proxy"])  # read by Ray's processes: before ray.init

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="chaos-"))
    ray.init(num_cpus=2, include_dashboard=False, namespace="llm-router", log_to_driver=False)
    try:
        report = asyncio.run(run_chaos(
            workdir, duration_s=args.duration, http_concurrency=args.http, bars=args.bars,
            down_s=args.down, latency_scale=args.latency_scale, db_url=args.db_url))
    finally:
        ray.shutdown()
    print()
    print(report.table())
    print(f"\naudit DB and backtest output: {workdir}")
    if args.json:
        Path(args.json).write_text(report_json(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
