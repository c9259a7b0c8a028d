"""What the router adds on top of a provider call, measured side by side in one run.

Arms (each at concurrency 1 and 32, against the same loopback simulator, latency 0):
  direct    raw aiohttp POSTs to the simulator — the limit
  api       the Python API: caller → router actor → provider actor → simulator,
            with tracking, breakers, rate limits and budgets all on
  (litellm  its Router on the same simulator, when `litellm` is installed)
Plus the pure policy decision for 5 providers.

    .venv/bin/python scripts/bench_router.py [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.config import DEFAULT_CONFIG  # noqa: E402

PROMPT = "Context: SPY 1d, regime: bull, RSI(14) 61.2, MACD above signal. Trade signal as JSON."
Call = Callable[[], Awaitable[object]]


def bench_config(db_dir: str) -> dict:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["simulator"] = {"mode": "always", "latency_scale": 0.0}
    data["tracker"] = {"db_path": os.path.join(db_dir, "audit.sqlite3")}
    for p in data["providers"]:  # limits far above what the bench reaches: measure overhead
        p.update(rpm=1_000_000, tpm=1_000_000_000, max_concurrency=256)
    return data


async def measure(call: Call, concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0

    async def worker(stop: float, keep: bool) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < stop:
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if keep:
                lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(time.perf_counter() + min(1.0, seconds / 3), False)
                           for _ in range(concurrency)))
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99
    return {"rps": len(lat) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
            "n": len(lat), "errors": errors}


def direct_arm(sim_url: str, session: aiohttp.ClientSession) -> Call:
    url = sim_url + "/v1/chat/completions"
    body = json.dumps({"model": "gpt-4-turbo", "max_tokens": 256,
                       "messages": [{"role": "user", "content": PROMPT}]}).encode()
    headers = {"authorization": "Bearer x", "content-type": "application/json"}

    async def call() -> object:
        async with session.post(url, data=body, headers=headers) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(r.status)
            return data

    return call


def api_arm(llm) -> Call:
    async def call() -> object:
        return await llm.acomplete(PROMPT, provider="gpt-4-turbo", max_tokens=256)

    return call


def policy_decision_us() -> float:
    from actors.config import load_config
    from actors.policies import PolicySettings, rank
    from actors.router import _initial_snapshot
    from actors.snapshot import Candidate, Need

    cfg = load_config()
    cands = [Candidate.from_snapshot(_initial_snapshot(p, True), {"samples": 50,
             "success_rate": 0.97, "mean_confidence": 0.7, "p50_s": 0.4 + i / 10})
             for i, p in enumerate(cfg.providers)]
    need, s = Need(800, 512), PolicySettings()
    best = float("inf")
    for policy in ("accuracy-first", "cost-aware", "latency-aware"):
        n = 20000
        t = min(timeit.repeat(lambda p=policy: rank(p, cands, need, s, 0.0), number=n, repeat=3))
        best = min(best, t / n * 1e6)
        print(f"  policy {policy:<15} {t / n * 1e6:6.1f} µs / decision (5 providers)")
    return best


async def run(args: argparse.Namespace) -> dict:
    from actors.api import connect

    tmp = tempfile.mkdtemp(prefix="bench-router-")
    llm = connect(config=bench_config(tmp), num_cpus=2)
    sim_url = llm.handles.simulator_url
    results: dict[str, dict] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            arms = {"direct": direct_arm(sim_url, session), "api": api_arm(llm)}
            for conc in (1, 32):
                for name, call in arms.items():
                    r = await measure(call, conc, args.seconds)
                    results[f"{name}@{conc}"] = r
                    print(f"  {name:<8} c={conc:<3} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms"
                          f"  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}", flush=True)
    finally:
        llm.shutdown()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print("pure policy decision:")
    decision = policy_decision_us()
    print("arms (simulator latency 0):")
    res = asyncio.run(run(args))
    d1, a1 = res["direct@1"], res["api@1"]
    d32, a32 = res["direct@32"], res["api@32"]
    print("\n| arm | c=1 req/s | c=1 p50 ms | added p50 ms | c=32 req/s | c=32 p99 ms | × direct @32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("direct", "api"):
        r1, r32 = res[f"{name}@1"], res[f"{name}@32"]
        print(f"| {name} | {r1['rps']:.0f} | {r1['p50_ms']:.2f} | {r1['p50_ms'] - d1['p50_ms']:.2f} "
              f"| {r32['rps']:.0f} | {r32['p99_ms']:.1f} | {r32['rps'] / d32['rps']:.3f} |")
    print(f"\npolicy decision (best of 3 policies, 5 providers): {decision:.1f} µs")
    print(f"targets: added p50 ≤ 4 ms (got {a1['p50_ms'] - d1['p50_ms']:.2f}); "
          f"throughput ≥ 0.15× direct at 32 (got {a32['rps'] / d32['rps']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"decision_us": decision, **res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
