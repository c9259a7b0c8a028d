"""What request ids as idempotency keys cost the router, measured side by side in one run.

The router core (actors/routing/router.py) with an instant in-process provider, so only the router's
own work is timed: policy, budgets, records, and — per arm — the idempotency book:

  off        no book (what the router did before issue #11)
  memory     the book without a store (in-memory outcomes only)
  disk       the book with its SQLite store, whole outcomes on disk (store_text: full)
  disk-hash  the store holding only hashes (store_text: hash / none)
  replay     every request a duplicate of a stored one (the replay path)

Each arm runs at concurrency 1 and 32, arms interleaved over rounds; the table gives the
median µs of wall time per request and of the process's CPU per request, and each as a
ratio to `off`.

    .venv/bin/python scripts/bench_idempotency.py [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.clients.base import Result  # noqa: E402
from actors.config import load_config  # noqa: E402
from actors.routing.route import RouteRequest, RoutingError  # noqa: E402
from actors.routing.router import Router  # noqa: E402
from actors.rpc.messages import AttemptInfo, ProviderCall, ProviderReply  # noqa: E402
from actors.shells.router_state import decode_outcome, encode_outcome  # noqa: E402
from actors.stores.idempotency import IdempotencyBook, IdempotencySpec, IdempotencyStore  # noqa: E402

CFG = load_config()
PROMPT = "Context: SPY 1d, regime: bull, RSI(14) 61.2, MACD above signal. Trade signal as JSON."
ANSWER = '{"direction": "long", "confidence": 0.7, "rationale": "' + "x" * 600 + '"}'
ARMS = ("off", "memory", "disk", "disk-hash", "replay")


async def provider(name: str, call: ProviderCall) -> ProviderReply:
    spec = CFG.provider(name)
    res = Result(provider=name, model=spec.model, text=ANSWER, input_tokens=120,
                 output_tokens=160, finish_reason="stop", latency_s=0.0, cost_usd=0.002)
    return ProviderReply(provider=name, model=spec.model, result=res,
                         attempts=[AttemptInfo(attempt=1, ts=time.time(), ok=True,
                                               input_tokens=120, output_tokens=160,
                                               cost_usd=0.002, response=ANSWER)])


def router_for(arm: str, tmp: Path) -> Router:
    router = Router(CFG, provider, lambda records: None)
    if arm == "off":
        return router
    store = None if arm == "memory" else IdempotencyStore(tmp / f"{arm}.sqlite3")
    router.idempotency = IdempotencyBook(
        IdempotencySpec(), store, key=b"k" * 32, kept=(RoutingError,),
        encode=None if arm == "disk-hash" else encode_outcome, decode=decode_outcome)
    return router


async def measure(router: Router, arm: str, n: int, concurrency: int, tag: str) -> tuple:
    ids = [f"{tag}-{i}" for i in range(n)]
    if arm == "replay":  # store them first; the timed part only replays
        for rid in ids:
            await router.route(RouteRequest(messages=[{"role": "user", "content": PROMPT}],
                                            provider="gpt-4-turbo", request_id=rid))
    it = iter(ids)

    async def worker() -> None:
        for rid in it:
            await router.route(RouteRequest(messages=[{"role": "user", "content": PROMPT}],
                                            provider="gpt-4-turbo", request_id=rid))

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-idem-"))
    routers = {arm: router_for(arm, tmp) for arm in ARMS}
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for c in (1, 32):
            for arm in ARMS:
                results.setdefault((arm, c), []).append(
                    await measure(routers[arm], arm, args.requests, c, f"r{r}c{c}{arm}"))
    print(f"router core, instant provider; {args.requests} requests per cell, median of "
          f"{args.rounds} interleaved rounds (µs per request)\n")
    print("| arm | c | wall µs | × off | CPU µs | × off |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in (1, 32):
        base_w = statistics.median(w for w, _ in results[("off", c)])
        base_c = statistics.median(u for _, u in results[("off", c)])
        for arm in ARMS:
            w = statistics.median(x for x, _ in results[(arm, c)])
            u = statistics.median(y for _, y in results[(arm, c)])
            print(f"| {arm} | {c} | {w:.0f} | {w / base_w:.2f} | {u:.0f} | {u / base_c:.2f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(ap.parse_args()))
