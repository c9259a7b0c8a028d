"""Wire client throughput: httpx's default transport, httpx-aiohttp under `httpx.AsyncClient`,
our path (`make_client().send`: an `httpx.Request` handed straight to the httpx-aiohttp
transport) and raw aiohttp.

Every variant does the same work per attempt (the OpenAI wire format's `build`, JSON encoding,
the HTTP exchange, `parse`); only the HTTP layer differs. The server is the simulator with
latency_scale=0 in its own process, pinned to CPU 0; this client is pinned to CPU 1. The
send_stream row gets the same kind of answer as server-sent events in 20 chunks (its HTTP body
differs), parsed event by event into the same Result. Usage:

    .venv/bin/python scripts/bench_clients.py [--seconds 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from actors.clients import Completion, Message, make_client
from actors.clients.http import limits_for, make_transport, timeout_for
from actors.clients.openai import OpenAIClient
from actors.config import ProviderSpec
from actors.simulator import SimulatorProcess, simulator_base_url

PROMPT = (
    "You are a trading analyst. Context: symbol SPY, timeframe: 1d, regime: bull, "
    "close: 512.3. RSI(14) 61.2, MACD 1.4 above signal. Answer as JSON."
)
COMPLETION = Completion(messages=[Message(role="user", content=PROMPT)], max_tokens=256)

Attempt = Callable[[], Awaitable[object]]
Run = tuple[list[float], float, float]


DEFAULT = "httpx.AsyncClient, default transport"
ASYNC_CLIENT = "httpx.AsyncClient + httpx-aiohttp transport"
OURS = "ours: make_client().send (httpx.Request → httpx-aiohttp)"
STREAM = "ours: make_client().send_stream (same answer as 20 SSE chunks)"
RAW = "raw aiohttp"
VARIANTS = [DEFAULT, ASYNC_CLIENT, OURS, STREAM, RAW]


def spec_for(base_url: str, concurrency: int) -> ProviderSpec:
    return ProviderSpec(
        name="gpt-4-turbo", api="openai", model="gpt-4-turbo", base_url=base_url,
        api_key_env="BENCH_NO_KEY", input_cost_per_mtok=10, output_cost_per_mtok=30,
        max_input_tokens=128_000, max_output_tokens=4096, rpm=10**6, tpm=10**9,
        max_concurrency=concurrency,
    )  # fmt: skip


def via_async_client(spec: ProviderSpec, client: httpx.AsyncClient) -> Attempt:
    """An attempt the usual httpx way: `AsyncClient.post`, same build and parse as ours."""

    async def attempt() -> object:
        url, headers, body = OpenAIClient.build(spec, COMPLETION, "sim")
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        t0 = time.perf_counter()
        r = await client.post(url, content=content, headers=headers)
        return OpenAIClient.parse(
            spec, r.status_code, r.headers, r.content, time.perf_counter() - t0
        )

    return attempt


async def variant(name: str, spec: ProviderSpec) -> tuple[Attempt, Callable[[], Awaitable[None]]]:
    """(one attempt, close) for a variant; all build and parse the same way."""
    limits, timeout = limits_for(spec), timeout_for(spec)
    if name == DEFAULT:
        client = httpx.AsyncClient(limits=limits, timeout=timeout)
        return via_async_client(spec, client), client.aclose
    if name == ASYNC_CLIENT:
        client = httpx.AsyncClient(transport=make_transport(spec), limits=limits, timeout=timeout)
        return via_async_client(spec, client), client.aclose
    if name == OURS:
        wire = make_client(spec, base_url=spec.base_url)
        return (lambda: wire.send(COMPLETION)), wire.aclose
    if name == STREAM:
        wire = make_client(spec, base_url=spec.base_url)

        async def streamed() -> object:
            return [event async for event in wire.send_stream(COMPLETION)][-1]

        return streamed, wire.aclose
    if name == RAW:
        connector = aiohttp.TCPConnector(limit=limits.max_connections or 0, keepalive_timeout=30)
        session = aiohttp.ClientSession(connector=connector)

        async def attempt() -> object:
            url, headers, body = OpenAIClient.build(spec, COMPLETION, "sim")
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            t0 = time.perf_counter()
            async with session.post(url, data=content, headers=headers) as r:
                data = await r.read()
            return OpenAIClient.parse(spec, r.status, r.headers, data, time.perf_counter() - t0)

        return attempt, session.close
    raise ValueError(name)


async def drive(name: str, base_url: str, concurrency: int, seconds: float) -> Run:
    """(latencies, elapsed, client CPU seconds) of one timed run after a short warm-up."""
    attempt, close = await variant(name, spec_for(base_url, concurrency))
    latencies: list[float] = []

    async def worker(stop_at: float, record: bool) -> None:
        while (t0 := time.perf_counter()) < stop_at:
            await attempt()
            if record:
                latencies.append(time.perf_counter() - t0)

    try:
        warm = time.perf_counter() + 0.5
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        cpu0, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    finally:
        await close()
    return latencies, elapsed, cpu


def summary(name: str, concurrency: int, runs: list[Run]) -> dict:
    latencies = [x for lat, _, _ in runs for x in lat]
    q = statistics.quantiles(latencies, n=100)
    return {
        "name": name,
        "concurrency": concurrency,
        "rps": len(latencies) / sum(elapsed for _, elapsed, _ in runs),
        "cpu_us": 1e6 * sum(cpu for _, _, cpu in runs) / len(latencies),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0, help="per variant and concurrency")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (noise fairness)")
    ap.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    args = ap.parse_args()
    run = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    results = []
    with SimulatorProcess(latency_scale=0, seed=1, cpu=0 if pin else None) as sim:
        base = simulator_base_url("openai", sim.url)
        for concurrency in (1, 32):
            runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
            for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits all alike
                for name in VARIANTS:
                    runs[name].append(
                        run(drive(name, base, concurrency, args.seconds / args.rounds))
                    )
            results += [summary(name, concurrency, r) for name, r in runs.items()]
        totals = sim.stats().totals
    where = "server pinned to CPU 0, client to CPU 1" if pin else "unpinned"
    loop = "uvloop" if args.uvloop else "asyncio"
    print(f"\nOpenAI wire format, simulator with latency_scale=0 ({where}; client on {loop}),")
    print(
        f"{args.seconds:g} s per row in {args.rounds} interleaved rounds, each after 0.5 s warm-up; "
        "build + JSON + HTTP + parse per attempt\n"
    )
    print(
        "| client | in flight | req/s | p50 ms | p99 ms | client CPU µs/req | req/s vs raw aiohttp |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c = r["concurrency"]
        raw = next(x for x in results if x["name"] == RAW and x["concurrency"] == c)
        print(
            f"| {r['name']} | {r['concurrency']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['cpu_us']:,.0f} | {r['rps'] / raw['rps']:.2f} |"
        )
    print(f"\nsimulator counted {totals.requests} requests, {totals.ok} ok")


if __name__ == "__main__":
    main()
