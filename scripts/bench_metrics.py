"""What the request-level metrics add per request, measured side by side in one run.

Arms (same requests, same asyncio loop, a no-op metric backend so only our side is timed):
  off       RequestObserver with metrics disabled: the bare `await route(req)`
  on        labels (policy, provider, outcome, bounded end user), the time split and
            the local sums — what the router actor does per request
  attempt   Metrics.attempt, what a provider actor does per HTTP attempt
Times are this thread's CPU time (time.thread_time), so other processes on a busy machine
do not inflate them.

    .venv/bin/python scripts/bench_metrics.py [--requests 200000] [--users 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.policy.policies import POLICIES  # noqa: E402
from actors.routing.route import RouteRequest, RouteResult, RoutingTrace  # noqa: E402
from actors.shells.metrics import Metrics, MetricsSpec  # noqa: E402
from actors.shells.router_metrics import RequestObserver, at_provider  # noqa: E402


class NoOp:
    def inc(self, value, tags):
        pass

    observe = set = inc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=5000, help="distinct end users in the stream")
    args = ap.parse_args()
    rng = random.Random(1)
    users = [f"user-{min(int(rng.paretovariate(1.2)), args.users)}" for _ in range(1000)]
    reqs = [RouteRequest(messages=[{"role": "user", "content": "hi"}], user=users[i % 1000])
            for i in range(1000)]
    trace = RoutingTrace(request_id="r", policy="cost-aware", chosen="llama", cost_usd=0.001)
    result = RouteResult(request_id="r", provider="llama", model="m", text="x",
                         finish_reason="stop", input_tokens=1, output_tokens=1, cost_usd=0.001,
                         latency_s=0.0, trace=trace)

    async def route(req: RouteRequest) -> RouteResult:
        with at_provider():
            pass
        return result

    async def arm(obs: RequestObserver) -> float:
        n = args.requests
        t0 = time.thread_time()
        for i in range(n):
            await obs.route(reqs[i % 1000], route)
        return (time.thread_time() - t0) / n * 1e6

    async def run() -> dict[str, float]:
        on_metrics = Metrics(make=lambda d: NoOp())
        out = {}
        for _ in range(3):  # best of 3, interleaved
            off = await arm(RequestObserver(MetricsSpec(), Metrics(enabled=False), POLICIES))
            on = await arm(RequestObserver(MetricsSpec(), on_metrics, POLICIES))
            out["off"] = min(out.get("off", off), off)
            out["on"] = min(out.get("on", on), on)
        t0 = time.thread_time()
        for _ in range(args.requests):
            on_metrics.attempt("llama", True, None, 0.2, 0.001, 100, 50)
        out["attempt"] = (time.thread_time() - t0) / args.requests * 1e6
        on_metrics.flush()
        return out

    r = asyncio.run(run())
    print(f"per request: off {r['off']:.2f} µs, on {r['on']:.2f} µs "
          f"→ request metrics add {r['on'] - r['off']:.2f} µs ({r['on'] / r['off']:.2f}×)")
    print(f"per attempt (provider actor): {r['attempt']:.2f} µs")


if __name__ == "__main__":
    main()
