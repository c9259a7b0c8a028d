"""Throughput and latency of the provider simulator with zero added latency.

The simulator is one process on one core (pinned with taskset to CPU 0 where available);
this client runs on another core (CPU 1) so the two do not compete. The `openai stream` row
asks for the same answer streamed (20 SSE frames, usage chunk, [DONE]). Usage:

    .venv/bin/python scripts/bench_simulator.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import time

import aiohttp
import uvloop

from actors.simulator import SimulatorProcess, simulator_base_url

PROMPT = (
    "You are a trading analyst. Context: symbol SPY, timeframe: 1d, regime: bull, "
    "close: 512.3. RSI(14) 61.2, MACD 1.4 above signal. Answer as JSON."
)


def request_for(api: str, sim_url: str) -> tuple[str, dict[str, str], bytes]:
    base = simulator_base_url(api.removesuffix(" stream"), sim_url)
    msgs = [{"role": "user", "content": PROMPT}]
    if api.startswith("openai"):
        body = {"model": "gpt-4-turbo", "messages": msgs, "max_tokens": 256}
        if api.endswith("stream"):  # the same answer in 20 SSE frames
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return base + "/chat/completions", {"authorization": "Bearer x"}, _b(body)
    if api == "anthropic":
        body = {"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": msgs}
        return base + "/v1/messages", {"x-api-key": "x"}, _b(body)
    body = {
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
        "generationConfig": {"maxOutputTokens": 256, "thinkingConfig": {"thinkingBudget": 128}},
    }
    return base + "/models/gemini-2.5-pro:generateContent", {"x-goog-api-key": "x"}, _b(body)


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process, from /proc (Linux)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _b(obj: dict) -> bytes:
    return json.dumps(obj).encode()


async def drive(api: str, sim_url: str, pid: int, concurrency: int, seconds: float) -> dict:
    url, headers, body = request_for(api, sim_url)
    headers = {**headers, "content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(stop_at: float, record: bool) -> None:
            nonlocal errors
            while (t0 := time.perf_counter()) < stop_at:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                if record:
                    latencies.append(time.perf_counter() - t0)

        warm = time.perf_counter() + 0.5
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        cpu0, start = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        server_cpu = (cpu_seconds(pid) - cpu0) / elapsed
    q = statistics.quantiles(latencies, n=100)
    return {
        "api": api,
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "server_cpu": server_cpu,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    runs = [("openai", 1), ("openai", 32), ("anthropic", 32), ("gemini", 32),
            ("openai stream", 32)]
    with SimulatorProcess(latency_scale=0, seed=1, cpu=0 if pin else None) as sim:
        results = [uvloop.run(drive(api, sim.url, sim.pid, c, args.seconds)) for api, c in runs]
        totals = sim.stats().totals
    where = "server pinned to CPU 0, client to CPU 1" if pin else "unpinned"
    print(f"\nSimulator, latency_scale=0, one server process ({where}), {args.seconds:g} s a run\n")
    print(
        "| api | conc. | requests | req/s | p50 ms | p99 ms | server CPU | req per server CPU-s | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['api']} | {r['concurrency']} | {r['requests']} | {r['rps']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['server_cpu']:.0%} "
            f"| {r['rps'] / max(r['server_cpu'], 1e-9):,.0f} | {r['errors']} |"
        )
    print(f"\nsimulator counted {totals.requests} requests, {totals.ok} ok")
    print(
        "'req per server CPU-s' is the server's capacity on one fully busy core; it is steadier "
        "than req/s when the host is shared (server CPU < 100% means the client or host was the limit)."
    )


if __name__ == "__main__":
    main()
