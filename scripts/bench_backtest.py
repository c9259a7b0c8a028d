"""Backtest throughput against provider rate limits, and what it costs live traffic.

Five simulated providers with `rpm` limits (default 900+600+600+300+600 = 3,000/min =
50 req/s) and the simulator enforcing the same limits (a 429 "by limit" means the router
sent too fast), ~200 ms simulated latency. A backtest over the S&P 500 and NASDAQ samples
(`--bars` per series) with `assign: rate-share`, feedback on. Meanwhile a live request
(priority live) every `--probe-every` seconds measures the queueing a live caller sees.

Reports: sustained rate vs the aggregate limit (whole run, and steady state without the
first/last 5 s), wall time vs bars ÷ limit, 429s by limit, live added latency, and peak
RSS of the Ray processes (driver + everything it started), sampled every 0.5 s.

    .venv/bin/python scripts/bench_backtest.py [--bars 2400] [--json out.json]

`--rerun`: the response cache instead (issue 14). The demo backtest (S&P 500 from 2008, 300
bars, three policies) on the simulator at its default latencies, then the same inputs
again under a new run id, side by side in one cluster: provider calls (the simulator's
count), spend and wall time of each, and whether the first paid each distinct (provider,
prompt) once.

    .venv/bin/python scripts/bench_backtest.py --rerun [--bars 300]

`--batch`: provider batch APIs (issue 14 §2). The demo backtest synchronously, then in batch
mode, each on a fresh instance (own audit trail, learner and response cache, so neither run
answers the other's bars; the cache on, as by default): spend of each and the ratio, the spend
on the bars that went to providers with a batch API and its ratio, the mean paid per request
per provider in each mode, what the simulator received (requests, batch jobs and items,
distinct items), and whether every bar is stored once.

    .venv/bin/python scripts/bench_backtest.py --batch [--bars 300] [--batch-delay 2]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import ray
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.config import DEFAULT_CONFIG  # noqa: E402

RPM = {"claude": 900, "gemini": 600, "gpt-4-turbo": 600, "mixtral": 300, "llama": 600}


def bench_config(db_dir: str, rpm: dict[str, int], headroom: float = 0.0) -> dict:
    """Providers configured at the account's rpm, or `headroom` (a fraction) below it."""
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["simulator"] = {"mode": "always", "latency_scale": 1.0}
    data["tracker"] = {"db_path": os.path.join(db_dir, "audit.sqlite3")}
    for p in data["providers"]:
        p.update(rpm=int(rpm[p["name"]] * (1.0 - headroom)), tpm=100_000_000,
                 max_concurrency=64)
    return data


class PeakRSS:
    """Sum of RSS over this process and all its descendants (the embedded Ray cluster)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(every_s)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


async def probe(llm, stop: asyncio.Event, every_s: float, out: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            await llm.acomplete("Live check: one word.", policy="latency-aware", max_tokens=20,
                                timeout=60, request_id=f"live-{time.time_ns()}")
            out.append(time.perf_counter() - t0)
        except Exception as exc:  # report, keep probing
            print(f"live probe failed: {exc}", file=sys.stderr)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


def q(xs: list[float], p: float) -> float:
    if len(xs) < 2:
        return xs[0] if xs else float("nan")
    return statistics.quantiles(xs, n=100, method="inclusive")[int(p) - 1]


async def run(args: argparse.Namespace, llm, runs_dir: Path) -> dict:
    from actors.backtest import BacktestSpec, SeriesSpec, arun_backtest

    idle: list[float] = []
    for _ in range(8):
        await probe_once(llm, idle)
    spec = BacktestSpec(
        run_id="bench", series=[SeriesSpec(source="sample:sp500"),
                                SeriesSpec(source="sample:nasdaq")],
        limit=args.bars, policies=["latency-aware"], assign="rate-share", runs_dir=runs_dir,
        timeout=600)
    live: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.ensure_future(probe(llm, stop, args.probe_every, live))
    try:
        out = await arun_backtest(llm, spec, progress=not args.quiet, write_report=False)
    finally:
        stop.set()
        await prober
    return {"out": out, "idle": idle, "live": live}


async def probe_once(llm, sink: list[float]) -> None:
    t0 = time.perf_counter()
    await llm.acomplete("Live check: one word.", policy="latency-aware", max_tokens=20,
                        timeout=60)
    sink.append(time.perf_counter() - t0)


def rerun(args: argparse.Namespace) -> int:
    """The demo backtest twice with the same inputs: the second from the response cache."""
    from actors.api import connect
    from actors.backtest import BacktestSpec, SeriesSpec, run_backtest
    from actors.backtest.command import DEMO

    tmp = tempfile.mkdtemp(prefix="bench-rerun-")
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["simulator"] = {"mode": "always", "latency_scale": 1.0}
    data["tracker"] = {"db_path": os.path.join(tmp, "audit.sqlite3")}
    llm = connect(config=data)
    rows = []
    try:
        for run_id in ("first", "again"):
            spec = BacktestSpec(run_id=run_id, series=[SeriesSpec(source=DEMO["source"])],
                                start=DEMO["start"], limit=args.bars,
                                policies=DEMO["policies"], runs_dir=Path(tmp) / "runs")
            before = ray.get(llm.simulator.stats.remote())["totals"]["requests"]
            out = run_backtest(llm, spec, progress=not args.quiet, write_report=False)
            calls = ray.get(llm.simulator.stats.remote())["totals"]["requests"] - before
            df = out.results
            rows.append({"run": run_id, "results": len(df), "provider_calls": calls,
                         "distinct_provider_prompt": len(df[["provider", "ts"]]
                                                         .drop_duplicates()),
                         "cached": out.cached, "spend_usd": out.spend_usd,
                         "saved_usd": out.saved_usd, "wall_s": out.wall_s})
    finally:
        llm.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    first, again = rows
    print()
    for r in rows:
        print(f"{r['run']:6} {r['results']} results  provider calls {r['provider_calls']:4}  "
              f"distinct (provider, prompt) {r['distinct_provider_prompt']:4}  cached "
              f"{r['cached']:4}  spend ${r['spend_usd']:.4f}  saved ${r['saved_usd']:.4f}  "
              f"wall {r['wall_s']:.1f} s")
    print(f"re-run / first: provider calls {again['provider_calls']}, spend "
          f"${again['spend_usd']:.4f}, wall {again['wall_s'] / first['wall_s']:.3f}x; first "
          f"run paid {first['provider_calls']} calls for {first['results']} results "
          f"({first['distinct_provider_prompt']} distinct (provider, prompt))")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def batch_vs_sync(args: argparse.Namespace) -> int:
    """The demo backtest synchronously and in batch mode, side by side."""
    import httpx

    from actors.api import connect
    from actors.backtest import BacktestSpec, SeriesSpec, run_backtest
    from actors.backtest.command import DEMO

    rows = []
    for mode in ("sync", "batch"):
        tmp = tempfile.mkdtemp(prefix=f"bench-{mode}-")
        data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
        data["simulator"] = {"mode": "always", "latency_scale": 1.0}
        data["tracker"] = {"db_path": os.path.join(tmp, "audit.sqlite3")}
        data["state_dir"] = tmp
        llm = connect(config=data)
        url = llm.handles.simulator_url
        try:
            httpx.put(f"{url}/_sim/batches", json={"delay_s": args.batch_delay},
                      trust_env=False).raise_for_status()
            ray.get(llm.simulator.reset_stats.remote())
            spec = BacktestSpec(run_id=mode, series=[SeriesSpec(source=DEMO["source"])],
                                start=DEMO["start"], limit=args.bars,
                                policies=DEMO["policies"], runs_dir=Path(tmp) / "runs",
                                batch=mode == "batch", batch_poll_s=0.5)
            out = run_backtest(llm, spec, progress=not args.quiet, write_report=False)
            sim = ray.get(llm.simulator.stats.remote())["totals"]["requests"]
            b = httpx.get(f"{url}/_sim/batches/stats", trust_env=False).json()
        finally:
            llm.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
        df = out.results
        batchable = {p["name"] for p in data["providers"] if p.get("batch_discount")}
        on_batchable = df[df["provider"].isin(batchable)]
        rows.append({"mode": mode, "results": len(df), "stored_once": bool(df["key"].is_unique),
                     "ok": int(df["ok"].sum()), "spend_usd": float(df["cost_usd"].sum()),
                     "spend_batch_providers_usd": float(on_batchable["cost_usd"].sum()),
                     "bars_on_batch_providers": len(on_batchable),
                     "sim_requests": sim,
                     "batch_jobs": b["jobs"], "batch_items": b["items"],
                     "batch_distinct_items": b["distinct_items"], "wall_s": out.wall_s,
                     "providers": df["provider"].value_counts().to_dict(),
                     "paid_per_request": {p: float(g["cost_usd"].mean()) for p, g in
                                          df[~df["cached"].fillna(False).astype(bool)]
                                          .groupby("provider")}})
    sync, batch = rows
    print()
    for r in rows:
        print(f"{r['mode']:5} {r['results']} results ({r['ok']} ok, stored once: "
              f"{r['stored_once']})  spend ${r['spend_usd']:.4f} (on batch providers "
              f"${r['spend_batch_providers_usd']:.4f}, {r['bars_on_batch_providers']} bars)  "
              f"simulator: {r['sim_requests']} requests (batch items included), "
              f"{r['batch_jobs']} batch jobs, "
              f"{r['batch_items']} items ({r['batch_distinct_items']} distinct)  "
              f"wall {r['wall_s']:.1f} s  providers {r['providers']}")
    whole = batch["spend_usd"] / sync["spend_usd"]
    per_bar = lambda r: r["spend_batch_providers_usd"] / max(1, r["bars_on_batch_providers"])  # noqa: E731
    print(f"batch / sync spend: {whole:.3f}x; per bar on providers with a batch API: "
          f"{per_bar(batch) / per_bar(sync):.3f}x")
    for p in sorted(set(sync["paid_per_request"]) & set(batch["paid_per_request"])):
        a, b = sync["paid_per_request"][p], batch["paid_per_request"][p]
        print(f"  {p:12} paid per request: sync ${a:.5f}, batch ${b:.5f} = {b / a:.3f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rerun", action="store_true",
                    help="measure the response cache: the demo backtest run twice")
    ap.add_argument("--bars", type=int, default=None,
                    help="bars per series (2 series; default 2400); --rerun: bars (300)")
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--probe-every", type=float, default=1.0, help="live request period, s")
    ap.add_argument("--headroom", type=float, default=0.0,
                    help="configure the router this fraction below the account rpm (0.0)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--json", default=None, help="write the figures here too")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run's audit DB and results (printed at the end)")
    ap.add_argument("--batch", action="store_true",
                    help="measure batch mode: the demo backtest synchronously, then batched")
    ap.add_argument("--batch-delay", type=float, default=2.0,
                    help="--batch: seconds the simulator takes to end a batch job (2)")
    args = ap.parse_args()
    if args.batch:
        args.bars = args.bars or 300
        return batch_vs_sync(args)
    if args.rerun:
        args.bars = args.bars or 300
        return rerun(args)
    args.bars = args.bars or 2400

    from actors.api import connect

    tmp = tempfile.mkdtemp(prefix="bench-backtest-")
    cfg = bench_config(tmp, RPM, args.headroom)
    limit_rps = sum(RPM.values()) / 60.0  # the accounts' (the simulator's) limit
    configured_rps = sum(p["rpm"] for p in cfg["providers"]) / 60.0
    with PeakRSS() as mem:
        t0 = time.time()
        llm = connect(config=cfg)
        print(f"==> ready in {time.time() - t0:.1f} s; aggregate limit {sum(RPM.values())} rpm "
              f"= {limit_rps:.1f} req/s", file=sys.stderr)
        try:
            for p in llm.config.providers:
                ray.get(llm.simulator.set_profile.remote(p.model, {
                    "base_ms": args.latency_ms, "jitter": 0.1, "ms_per_token": 0.0,
                    "rpm": RPM[p.name]}))
            ray.get(llm.simulator.reset_stats.remote())
            res = asyncio.run(run(args, llm, Path(tmp) / "runs"))
            stats = ray.get(llm.simulator.stats.remote())
        finally:
            llm.shutdown()
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
    if args.keep:
        print(f"==> audit DB and results kept in {tmp}", file=sys.stderr)
    out = res["out"]
    df = out.results
    n = len(df)
    done = df["done_at"].sort_values().to_numpy()
    steady = done[(done >= done[0] + 5) & (done <= done[-1] - 5)]
    steady_rps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 2 else float("nan")
    by_limit = sum(m["rate_limited_by_limit"] for m in stats["models"].values())
    idle, live = res["idle"], res["live"]
    figures = {
        "bars": n, "aggregate_limit_rps": limit_rps, "configured_rps": configured_rps,
        "headroom": args.headroom, "wall_s": out.wall_s,
        "ideal_wall_s": n / limit_rps, "wall_vs_ideal": out.wall_s / (n / limit_rps),
        "sustained_rps": n / out.wall_s, "sustained_vs_limit": n / out.wall_s / limit_rps,
        "steady_rps": steady_rps, "steady_vs_limit": steady_rps / limit_rps,
        "with_live_vs_limit": (n + len(res["live"])) / out.wall_s / limit_rps,
        "sim_requests": stats["totals"]["requests"], "sim_ok": stats["totals"]["ok"],
        "rate_limited_by_limit": by_limit, "failures": out.failures,
        "live_idle_p50_ms": q(idle, 50) * 1000, "live_p50_ms": q(live, 50) * 1000,
        "live_p95_ms": q(live, 95) * 1000, "live_added_p50_ms": (q(live, 50) - q(idle, 50)) * 1000,
        "live_added_p95_ms": (q(live, 95) - q(idle, 50)) * 1000, "live_probes": len(live),
        "window": out.window, "feedback_sent": out.feedback_sent,
        "peak_rss_mb": mem.peak / 2**20,
    }
    print(f"""
bars routed             {n}  (failures: {out.failures or 'none'})
aggregate rate limit    {limit_rps:.1f} req/s ({sum(RPM.values())} rpm over {len(RPM)} providers; router configured at {configured_rps:.1f}, headroom {args.headroom:.0%})
sustained rate          {figures['sustained_rps']:.2f} req/s = {figures['sustained_vs_limit']:.1%} of the limit (steady state {figures['steady_vs_limit']:.1%}; with the live probes {figures['with_live_vs_limit']:.1%})
wall time               {out.wall_s:.1f} s vs bars/limit {figures['ideal_wall_s']:.1f} s = {figures['wall_vs_ideal']:.3f}x
429s by limit           {by_limit} (simulator saw {stats['totals']['requests']} requests)
live request latency    idle p50 {figures['live_idle_p50_ms']:.0f} ms; during the backtest p50 {figures['live_p50_ms']:.0f} ms, p95 {figures['live_p95_ms']:.0f} ms ({len(live)} probes) -> added p50 {figures['live_added_p50_ms']:.0f} ms, p95 {figures['live_added_p95_ms']:.0f} ms
in-flight window        {out.window}; feedback sent {out.feedback_sent}
peak RSS (Ray + driver) {figures['peak_rss_mb']:.0f} MiB""")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
