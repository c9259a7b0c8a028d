"""What the HTTP gate adds per request, side by side in one run (no Ray, one process):

  passthrough   a bare ASGI call of a trivial app
  gate          serve/middleware.Gate in front of it: Host allow-list, client token (keyed
                MAC, constant-time compare), JSON content type, body size — a request that
                passes every check, as a chat completion does
  validation    OpenAI ChatRequest bodies validated with strict types (as served) and, for
                comparison, the same model with pydantic's lax coercion

    .venv/bin/python scripts/bench_gate.py [--n 20000] [--repeat 7]

A replica spends about a millisecond of CPU per request (serve/BENCH_NOTES.md): the figures
here say what share of it the checks take.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import ConfigDict  # noqa: E402

from serve import openai_compat as oai  # noqa: E402
from serve.auth import Verifier, digests  # noqa: E402
from serve.hosts import HostAllowList  # noqa: E402
from serve.middleware import Gate, GateSettings  # noqa: E402
from serve.spec import LOOPBACK_HOSTS, AuthSpec  # noqa: E402

TOKEN, ADMIN = "client-token-0123456789abcdef", "admin-token-0123456789abcdef"
BODY = {"model": "gpt-4-turbo", "max_tokens": 256, "messages": [
    {"role": "user", "content": "Context: SPY 1d, regime: bull, RSI(14) 61.2. Trade signal?"}]}
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"Python/3.11 aiohttp/3.9"),
           (b"accept", b"*/*"), (b"authorization", f"Bearer {TOKEN}".encode()),
           (b"content-type", b"application/json"), (b"content-length", b"120")]


async def _inner(scope: dict, receive: Any, send: Any) -> None:
    await receive()


async def _receive() -> dict:
    return {"type": "http.request", "body": b"x" * 120, "more_body": False}


async def _send(message: dict) -> None:
    pass


async def per_request_us(app: Any, n: int, repeat: int) -> float:
    gate = GateSettings(Verifier.from_digests(digests(AuthSpec(), env={
        "LLM_ROUTER_API_TOKEN": TOKEN, "LLM_ROUTER_ADMIN_TOKEN": ADMIN})),
        HostAllowList.of(LOOPBACK_HOSTS), True, 4 << 20)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "root_path": "",
             "headers": HEADERS, "app": SimpleNamespace(state=SimpleNamespace(gate=gate))}
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            await app(scope, _receive, _send)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


class _Lax(oai.ChatRequest):
    model_config = ConfigDict(extra="forbid", strict=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    bare = asyncio.run(per_request_us(_inner, args.n, args.repeat))
    gated = asyncio.run(per_request_us(Gate(_inner), args.n, args.repeat))
    strict = min(timeit.repeat(lambda: oai.ChatRequest.model_validate(BODY), number=args.n,
                               repeat=args.repeat)) / args.n * 1e6
    lax = min(timeit.repeat(lambda: _Lax.model_validate(BODY), number=args.n,
                            repeat=args.repeat)) / args.n * 1e6
    print("| what | µs per request (best of runs) |")
    print("|---|---:|")
    print(f"| passthrough | {bare:.2f} |")
    print(f"| gate (Host, token MAC, content type, size) | {gated:.2f} |")
    print(f"| gate's own cost | {gated - bare:.2f} |")
    print(f"| ChatRequest, strict types (served) | {strict:.2f} |")
    print(f"| ChatRequest, lax types | {lax:.2f} |")
    print(f"\nstrict / lax validation: {strict / lax:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
