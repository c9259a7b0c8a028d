"""The streaming arms of `bench_router.py --http --stream`: time to first token and chunk
spacing through the endpoint vs straight to the simulator, side by side in one run.

The simulated provider answers in 1 s streamed as 20 chunks (profile: base 50 ms to the
first token, then a frame every 50 ms, latency_scale 1). Per request it records when the
first content chunk arrived and the gaps between content chunks; requests alternate
between the arms so the machine's noise hits both alike.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp

#: The phase-2 profile: a 1 s answer in 20 chunks.
STREAM_PROFILE = {"base_ms": 50, "jitter": 0, "ms_per_token": 0, "stream_interval_ms": 50,
                  "stream_chunks": 20}
MODEL = "gpt-4-turbo"
Timing = dict[str, object]


def sse_arm(url: str, session: aiohttp.ClientSession, prompt: str,
            headers: dict[str, str] | None = None) -> Callable[[], Awaitable[Timing]]:
    """One streamed chat completion: time to the first content chunk, the content chunks'
    arrival times (seconds from the send)."""
    body = json.dumps({"model": MODEL, "max_tokens": 256, "stream": True,
                       "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    hdrs = {"authorization": "Bearer x", "content-type": "application/json", **(headers or {})}

    async def call() -> Timing:
        t0 = time.perf_counter()
        arrivals: list[float] = []
        async with session.post(url, data=body, headers=hdrs) as r:
            if r.status != 200:
                raise RuntimeError(f"{r.status}: {(await r.read())[:200]!r}")
            async for line in r.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = json.loads(line[6:])
                if any(c.get("delta", {}).get("content") for c in chunk.get("choices", ())):
                    arrivals.append(time.perf_counter() - t0)
        return {"ttft": arrivals[0] if arrivals else float("nan"), "arrivals": arrivals,
                "total": time.perf_counter() - t0}

    return call


def api_stream_arm(llm, prompt: str) -> Callable[[], Awaitable[Timing]]:
    """The Python API: `llm.stream(...)` (caller → router → provider actor → simulator)."""

    async def call() -> Timing:
        t0 = time.perf_counter()
        arrivals: list[float] = []
        async with llm.stream(prompt, provider=MODEL, max_tokens=256) as s:
            async for ev in s:
                if getattr(ev, "text", ""):
                    arrivals.append(time.perf_counter() - t0)
        return {"ttft": arrivals[0] if arrivals else float("nan"), "arrivals": arrivals,
                "total": time.perf_counter() - t0}

    return call


async def measure_streams(arms: dict[str, Callable[[], Awaitable[Timing]]],
                          requests: int) -> dict[str, dict[str, float]]:
    """Concurrency 1, arms interleaved request by request."""
    seen: dict[str, list[Timing]] = {name: [] for name in arms}
    for call in arms.values():  # warm-up
        await call()
    for _ in range(requests):
        for name, call in arms.items():
            seen[name].append(await call())
    out: dict[str, dict[str, float]] = {}
    for name, runs in seen.items():
        gaps = [b - a for r in runs for a, b in zip(r["arrivals"], r["arrivals"][1:], strict=False)]  # type: ignore[arg-type]
        out[name] = {"ttft_p50_ms": statistics.median(r["ttft"] for r in runs) * 1000,  # type: ignore[misc]
                     "ttft_p90_ms": statistics.quantiles([r["ttft"] for r in runs], n=10)[-1]  # type: ignore[misc]
                     * 1000,
                     "gap_p50_ms": statistics.median(gaps) * 1000 if gaps else float("nan"),
                     "gap_p90_ms": statistics.quantiles(gaps, n=10)[-1] * 1000
                     if len(gaps) > 2 else float("nan"),
                     "chunks": statistics.mean(len(r["arrivals"]) for r in runs),  # type: ignore[arg-type]
                     "total_p50_ms": statistics.median(r["total"] for r in runs) * 1000,  # type: ignore[misc]
                     "n": len(runs)}
    return out


def report(res: dict[str, dict[str, float]]) -> None:
    d = res["direct"]
    print("\n| arm | TTFT p50 ms | TTFT p90 ms | added TTFT p50 ms | chunk gap p50 ms | "
          "gap p90 ms | content chunks | total p50 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['ttft_p50_ms']:.1f} | {r['ttft_p90_ms']:.1f} | "
              f"{r['ttft_p50_ms'] - d['ttft_p50_ms']:.2f} | {r['gap_p50_ms']:.1f} | "
              f"{r['gap_p90_ms']:.1f} | {r['chunks']:.1f} | {r['total_p50_ms']:.0f} |")
    if "http" in res:
        print(f"target: first token added ≤ 5 ms through the endpoint (got "
              f"{res['http']['ttft_p50_ms'] - d['ttft_p50_ms']:.2f}); chunks with the "
              f"provider's spacing (gap p50 {res['http']['gap_p50_ms']:.1f} vs "
              f"{d['gap_p50_ms']:.1f} ms direct)")
