"""`llm-router evaluate`: replay outcomes through policies before switching to one.

    llm-router evaluate outcomes.csv --policy cost-aware --policy accuracy-first
    llm-router evaluate synthetic:drift --runs 3 --plot eval.png
    llm-router evaluate --audit                 # the audit trail's own feedback (off-policy)

A table (CSV/Parquet, see actors/evaluate/table.py) is priced with the configured
providers; `synthetic:<shape>` generates one with known answers (and its own two
providers). No Ray, no provider calls: the plain Router core with the outcomes injected.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from actors.config import Config, ConfigError, load_config
from actors.policy.policies import POLICIES

SYNTHETIC = "synthetic:"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", nargs="?", help="outcome table (CSV or Parquet), or "
                   "synthetic:<shape> (mmlu, mmlu-narrow, mmlu-drift, default, drift, many, narrow, "
                   "long-prompts, small, small-drift: actors/evaluate/generate.py)")
    p.add_argument("--audit", nargs="?", const="", default=None, metavar="DB",
                   help="replay the audit trail's feedback instead (default DB: the config's)")
    p.add_argument("--policy", action="append", choices=sorted(POLICIES),
                   help="policy to evaluate (repeatable; default cost-aware and accuracy-first)")
    p.add_argument("--quality-target", type=float, default=None,
                   help="cost-aware's target (default: router.quality_target, 0.95)")
    p.add_argument("--outcome-value-usd", type=float, default=None,
                   help="cost-aware: value of a right answer instead of a target")
    p.add_argument("--inflight", type=int, default=8,
                   help="requests decided before earlier outcomes arrive (default 8)")
    p.add_argument("--runs", type=int, default=1, help="runs per policy (sampling seeds)")
    p.add_argument("--seed", type=int, default=0, help="first sampling seed; also the "
                   "synthetic table's seed")
    p.add_argument("--context-cols", default=None,
                   help="comma-separated context columns (default: the configured keys)")
    p.add_argument("--providers", default=None,
                   help="comma-separated outcome columns (default: configured providers found)")
    p.add_argument("--plot", default=None, help="write the plot here (PNG)")
    p.add_argument("--write-table", default=None, help="save a synthetic table (CSV)")
    p.add_argument("--json", default=None, help="write the figures as JSON")


def _config(args: argparse.Namespace, generated=None) -> Config:
    if getattr(args, "config", None):  # `--config`, before or after the subcommand
        return load_config(args.config)
    if generated is not None:
        return Config(providers=generated.providers, simulator={"mode": "always"})
    return load_config(None)


def run(args: argparse.Namespace) -> int:
    from actors.evaluate.table import TableError

    try:
        return _run(args)
    except (TableError, ConfigError, ValueError) as exc:
        print(f"llm-router evaluate: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.inflight < 1 or args.runs < 1:
        raise ValueError("--inflight and --runs must be at least 1")
    policies = args.policy or ["cost-aware", "accuracy-first"]
    if args.audit is not None:
        return _audit(args, policies)
    if not args.table:
        raise ValueError("give an outcome table, synthetic:<shape>, or --audit")
    from actors.evaluate.generate import generate
    from actors.evaluate.report import evaluate, plot, render
    from actors.evaluate.table import from_frame, read_frame

    generated = None
    if args.table.startswith(SYNTHETIC):
        generated = generate(args.table[len(SYNTHETIC):] or "default", seed=args.seed)
        frame = generated.table
        if args.write_table:
            frame.to_csv(args.write_table, index=False)
            print(f"wrote {args.write_table}")
    else:
        frame = read_frame(args.table)
    config = _config(args, generated)
    table = from_frame(frame, config,
                       context_cols=args.context_cols.split(",") if args.context_cols else None,
                       providers=args.providers.split(",") if args.providers else None)
    print(f"{len(table)} requests, providers {', '.join(table.providers)}, "
          f"{len({tuple(sorted(c.items())) for c in table.contexts})} contexts", flush=True)
    started = time.monotonic()
    ev = evaluate(table, config, policies, target=args.quality_target,
                  outcome_value_usd=args.outcome_value_usd, inflight=args.inflight,
                  runs=args.runs, seed=args.seed,
                  progress=lambda s: print(f"  replaying {s} ...", flush=True))
    print(f"replayed in {time.monotonic() - started:.1f} s\n")
    print(render(ev))
    if args.plot:
        print(f"plot: {plot(ev, args.plot)}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "summary": json.loads(ev.summary().reset_index().to_json(orient="records")),
            "quarters": {f"{r.policy}#{r.run + 1}": json.loads(r.quarters.reset_index().to_json(
                orient="records")) for r in ev.runs}}, indent=1))
    return 0


def _audit(args: argparse.Namespace, policies: list[str]) -> int:
    from actors.evaluate.logged import logged_stream, replay_logged
    from actors.shells.tracker import TrackerSpec
    from actors.stores.audit import AuditBackend, AuditStore, open_store

    config = _config(args)
    spec = TrackerSpec.from_config(config)
    store: AuditBackend
    if args.audit or spec.db_url is None:  # a file given, or the instance's SQLite file
        path: Path | str = Path(args.audit) if args.audit else spec.db_path
        if not Path(path).exists():
            raise ValueError(f"{path}: no audit database there")
        store = AuditStore(path)
    else:  # the cluster's PostgreSQL database
        path, store = spec.db_url, open_store(spec)
    try:
        stream = logged_stream(store)
    finally:
        store.close()
    if not stream:
        raise ValueError(f"{path}: no answered request with feedback to replay")
    print(f"{len(stream)} logged requests with feedback in {path}")
    for policy in policies:
        print(replay_logged(stream, config, policy, seed=args.seed).render())
    return 0
