"""The `llm-router backtest` and `llm-router demo` subcommands (wired in actors/cli.py).

Both check every input and claim the run directory *before* Ray or the router is started,
so a bad file, an unknown symbol or a run id used for other parameters costs nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pydantic import ValidationError

from actors.caller.dashboard import add_dashboard_flag, cluster_lines, ray_init_options

#: Simulated runs' shared response cache, in the runs directory.
SIMULATED_CACHE = "simulated-response-cache.sqlite3"
#: The demo: a few hundred real S&P 500 days through the 2008 crash, three policies.
DEMO = {"source": "sample:sp500", "start": "2008-01-01", "bars": 300,
        "policies": ["accuracy-first", "cost-aware", "latency-aware"]}


def add_args(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    p.add_argument("--address", default=None,
                   help="Ray address: none = embedded local Ray, 'auto' = the cluster on this "
                        "machine, ray://host:10001 = a remote cluster")
    p.add_argument("--run-id", default=None,
                   help="resume or name the run (default: " + ("demo-<time>" if demo else
                        "bt-<hash of the parameters>, so the same command resumes") + ")")
    p.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    add_dashboard_flag(p)
    p.add_argument("--state-dir", default=None,
                   help="this run's instance state (audit DB, journal, budget overrides); "
                        "default: the config's for real providers, <runs-dir>/<run-id>/state "
                        "for simulated ones")
    if demo:
        p.add_argument("--bars", type=int, default=DEMO["bars"],
                       help=f"bars to analyse (default {DEMO['bars']})")
        add_cache_args(p)
        return
    p.add_argument("--simulate", action="store_true",
                   help="answer every request with the built-in simulator (made-up answers, "
                        "marked as such); default: the real providers, keys from the env")
    p.add_argument("--data", action="append", default=None, metavar="SOURCE",
                   help="CSV/Parquet file or sample:sp500 / sample:nasdaq; repeat for several "
                        "series (default: sample:sp500)")
    p.add_argument("--symbol", action="append", default=None,
                   help="symbol per --data, in the same order (default: the sample's, or the "
                        "file's stem)")
    p.add_argument("--timeframe", default="1d", help="bar size (default 1d)")
    p.add_argument("--start", default=None, help="first bar to analyse, e.g. 2007-01-01")
    p.add_argument("--end", default=None, help="last bar to analyse")
    p.add_argument("--limit", type=int, default=None, help="at most this many bars per series")
    p.add_argument("--task", action="append", default=None,
                   help="analysis, pattern or risk; repeatable (default: analysis)")
    p.add_argument("--policy", action="append", default=None,
                   help="routing policy; repeat to compare policies (default: accuracy-first)")
    p.add_argument("--horizon", type=int, default=5, help="bars to judge an outcome on (5)")
    p.add_argument("--flat-threshold", type=float, default=0.01,
                   help="|return| below which a flat call was right (0.01)")
    p.add_argument("--assign", choices=["policy", "rate-share"], default="policy",
                   help="policy: the policy picks providers; rate-share: spread bars over "
                        "providers by their rpm (throughput)")
    p.add_argument("--inflight", type=int, default=None,
                   help="in-flight window (default: from rate limits × latency)")
    p.add_argument("--max-tokens", type=int, default=512, help="output cap per answer (512)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request deadline, s (300)")
    p.add_argument("--no-feedback", action="store_true", help="do not send outcome scores")
    p.add_argument("--batch", action="store_true",
                   help="submit bars as provider batch jobs (about half the price, answers "
                        "within hours) where the chosen provider has a batch API; the rest "
                        "go synchronously")
    p.add_argument("--batch-poll", type=float, default=30.0,
                   help="seconds between polls of submitted batch jobs (30)")
    add_cache_args(p)


def add_cache_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-cache", action="store_true",
                   help="bypass the response cache (default: a request answered before, in "
                        "any run, is answered from it for $0)")
    g.add_argument("--cache-only", action="store_true",
                   help="replay from the response cache without calling any provider; a bar "
                        "with no cached answer fails with cache_miss")


def cache_mode(args: argparse.Namespace) -> str:
    return "off" if args.no_cache else "only" if args.cache_only else "both"


def spec_from_args(args: argparse.Namespace) -> Any:
    from actors.backtest.spec import BacktestError, BacktestSpec, SeriesSpec

    data = args.data or ["sample:sp500"]
    symbols = args.symbol or []
    if symbols and len(symbols) != len(data):
        raise BacktestError(f"give one --symbol per --data ({len(data)} data, "
                            f"{len(symbols)} symbols), or none")
    series = [SeriesSpec(source=d, symbol=symbols[i] if symbols else None,
                         timeframe=args.timeframe) for i, d in enumerate(data)]
    return BacktestSpec(
        run_id=args.run_id, series=series, start=args.start, end=args.end, limit=args.limit,
        tasks=args.task or ["analysis"], policies=args.policy or ["accuracy-first"],
        horizon=args.horizon, flat_threshold=args.flat_threshold, max_tokens=args.max_tokens,
        assign=args.assign, runs_dir=args.runs_dir, timeout=args.timeout,
        inflight=args.inflight, feedback=not args.no_feedback, cache=cache_mode(args),
        batch=args.batch, batch_poll_s=args.batch_poll)


def demo_spec(args: argparse.Namespace) -> Any:
    from actors.backtest.spec import BacktestSpec, SeriesSpec

    run_id = args.run_id or time.strftime("demo-%Y%m%d-%H%M%S", time.gmtime())
    return BacktestSpec(run_id=run_id, series=[SeriesSpec(source=DEMO["source"])],
                        start=DEMO["start"], limit=args.bars, policies=DEMO["policies"],
                        runs_dir=args.runs_dir, cache=cache_mode(args))


def _fail(msg: str) -> int:
    print(f"llm-router: {msg}", file=sys.stderr)
    return 2


def instance_config(cfg: Any, args: argparse.Namespace, run_dir: Any, simulate: bool) -> Any:
    """The run's configuration: simulated when asked, with the state directory it uses.

    A simulated run never shares the user's state (audit trail, budget overrides): unless
    told otherwise it keeps its own next to its results, and its response cache (simulated
    answers only) in the runs directory, shared by every simulated run there — so running
    the demo twice answers the second time from the cache."""
    from pathlib import Path

    if simulate:
        cfg = cfg.simulating()
    if args.state_dir:
        return cfg.with_state_dir(args.state_dir)
    if cfg.simulate and args.address is None:
        cfg = cfg.with_state_dir(Path(run_dir) / "state")
        if cfg.cache.path is None:
            cfg = cfg.model_copy(update={"cache": cfg.cache.model_copy(update={
                "path": str(Path(run_dir).parent.resolve() / SIMULATED_CACHE)})})
        return cfg
    return cfg


def execute(args: argparse.Namespace, make_spec: Any, simulate: bool = False) -> int:
    from actors.backtest.runner import prepare, run_backtest
    from actors.backtest.spec import BacktestError
    from actors.backtest.store import RunStore
    from actors.config import load_config
    from prompts import DataError

    config = load_config(args.config)  # the same file connect() reads; ConfigError → exit 2
    try:
        spec = make_spec(args)
        prep = prepare(spec, config.regime)
        resumed = RunStore(spec.runs_dir, prep.run_id).claim(prep.defining)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or '<spec>'}: "
                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        return _fail("invalid backtest parameters\n" + "\n".join(lines))
    except (DataError, BacktestError) as exc:
        return _fail(str(exc))
    print(f"==> run {prep.run_id}{' (resuming)' if resumed else ''}: "
          f"{', '.join(s.label() for s in prep.series)} — {prep.total} requests "
          f"({sum(s.bars for s in prep.series)} bars × {len(spec.tasks)} task(s) × "
          f"{len(spec.policies)} polic{'y' if len(spec.policies) == 1 else 'ies'})")
    from actors.api import connect, describe_lines

    t0 = time.time()
    where = "local Ray" if args.address is None else args.address
    cfg = instance_config(config, args, spec.runs_dir / prep.run_id, simulate or args.simulate)
    kind = "the built-in simulator for every provider" if cfg.simulate else "real providers"
    print(f"==> starting {where} and the router's actors ({kind})")
    llm = connect(args.address, cfg, **ray_init_options(args.dashboard))
    try:
        print(f"    ready in {time.time() - t0:.1f} s; providers: {', '.join(llm.config.names)}")
        for line in [*describe_lines(llm.describe()),
                     *cluster_lines(llm.config.names, check=False)]:
            print(f"    {line}")
        try:
            out = run_backtest(llm, prep, progress=not args.no_progress)
        except KeyboardInterrupt:
            print(f"\n==> interrupted — rerun with --run-id {prep.run_id} to resume (answers "
                  "already paid for are stored or in the response cache; nothing is paid twice)",
                  file=sys.stderr)
            return 130
    finally:
        if args.address is None:
            llm.shutdown()
        else:  # a shared cluster: leave the router running for everyone else
            import ray

            ray.shutdown()
    print()
    print(out.text)
    failed = sum(1 for ok in out.results["ok"] if not ok)
    rate = (out.sent / out.wall_s) if out.wall_s > 0 else 0.0
    print(f"==> {out.finished}/{out.total} results ({out.skipped} already stored, {out.sent} sent, "
          f"{out.recovered} recovered from the audit trail; {out.cached} of them answered from "
          f"the response cache, saving ${out.saved_usd:.4f}), {failed} failed; spend this run "
          f"${out.spend_usd:.4f}; {out.wall_s:.1f} s ({rate:.1f} req/s), window {out.window}, "
          f"planned on {len(out.nodes)} node(s)")
    if out.report is not None:
        files = out.report.files
        print(f"==> report: {files['report.md']}  {files['report.html']}")
        print("    plots:  " + "  ".join(str(p) for k, p in files.items() if k.endswith("time")
                                         or k in ("provider_mix", "hit_rate")))
    print(f"    results: {out.run_dir / 'results'}/part-*.parquet")
    if out.stopped or not out.complete:
        print(f"==> stopped before the end ({out.stopped or 'incomplete'}); run the same command "
              f"again (run id {out.run_id}) to continue", file=sys.stderr)
        return 3
    return 0


def backtest(args: argparse.Namespace) -> int:
    return execute(args, spec_from_args)


def demo(args: argparse.Namespace) -> int:
    """The demo always runs on the simulator: it chooses it explicitly, as it should."""
    return execute(args, demo_spec, simulate=True)
