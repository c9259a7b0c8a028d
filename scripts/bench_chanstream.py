"""Time to a stream's first value over a same-node channel (actors/rpc/chanstream.py), the callee
in another process: a connection kept from the stream before vs a new one per stream.

A streamed request crosses two such hops before its first token (Serve replica or notebook →
router actor → provider actor). `kept` is what a stream takes now (the connection the last
stream to that callee ended on); `fresh` drops the kept ones first, so every stream
connects, is accepted and passes the token handshake (what every stream did before).
Streams go one at a time, the two arms alternating, so the machine's noise hits both alike.

    .venv/bin/python scripts/bench_chanstream.py [--streams 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.rpc.channel import ChannelClient  # noqa: E402
from actors.rpc.channel_server import ChannelServer  # noqa: E402


class Callee(ChannelServer):
    """Streams `n` small values, as a provider actor streams events."""

    async def _chan_handle(self, item: Any) -> Any:
        return item

    async def _values(self, n: int) -> Any:
        for i in range(n):
            yield i

    def _chan_stream(self, item: Any) -> Any:
        return self._values(item)


def serve(conn: Any) -> None:
    async def main() -> None:
        callee = Callee()
        conn.send(await callee.chan_endpoint())
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told
        callee._chan_sock.close()

    asyncio.run(main())


class _Handle:
    """The one Ray call a channel client makes (`chan_endpoint`), answered locally."""

    def __init__(self, endpoint: dict[str, str]) -> None:
        self.endpoint = endpoint

    def __getattr__(self, name: str) -> Any:
        if name != "chan_endpoint":
            raise AttributeError(name)
        outer = self

        class _Method:
            @staticmethod
            async def remote() -> dict[str, str]:
                return outer.endpoint

        return _Method


async def measure(endpoint: dict[str, str], streams: int) -> dict[str, list[float]]:
    ch = ChannelClient(_Handle(endpoint), "callee")
    seen: dict[str, list[float]] = {"fresh": [], "kept": []}

    async def one(arm: str, keep: bool = True) -> None:
        if arm == "fresh":
            ch.stream_conns.close()
        t0 = time.perf_counter()
        source = ch.stream(3)
        first = await anext(source)
        took = time.perf_counter() - t0
        assert first == 0
        async for _ in source:
            pass
        if keep:
            seen[arm].append(took)

    for _ in range(50):  # warm-up
        await one("kept", False)
        await one("fresh", False)
    for _ in range(streams):
        await one("fresh")
        await one("kept")
    ch.close()
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=2000, help="per arm")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child,), daemon=True)
    proc.start()
    try:
        endpoint = parent.recv()
        seen = asyncio.run(measure(endpoint, args.streams))
    finally:
        parent.send("stop")
        proc.join(10)
    print("| arm | first value p50 µs | p90 µs | n |\n|---|---:|---:|---:|")
    for arm, v in seen.items():
        print(f"| {arm} | {statistics.median(v) * 1e6:.0f} | "
              f"{statistics.quantiles(v, n=10)[-1] * 1e6:.0f} | {len(v)} |")
    fresh, kept = statistics.median(seen["fresh"]), statistics.median(seen["kept"])
    print(f"kept / fresh: {kept / fresh:.2f} (saves {(fresh - kept) * 1e6:.0f} µs a hop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
