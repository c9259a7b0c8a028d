"""The replica's own share of a chat request, in-process: the ASGI app from the gate to the
first streamed byte (and to a plain answer's last), the router answering instantly.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_ingress.py [--requests 3000]

Two arms, run interleaved in one process, each behind the same gate and error handlers:
`fastapi` is the route as it was before "Streaming TTFT round 2" (a FastAPI route taking
`ChatRequest`, a `StreamingResponse` over the events: rebuilt here, the product no longer
has it); `plain` is serve/app.py's route now (`serve/chat_route.py`), called through the
real app with a stand-in router. (No `from __future__ import annotations`: FastAPI must see
the old route's real types.) No HAProxy, uvicorn, Serve or process hop: what is left is
the CPU and the loop turns the app itself spends, so the ratio is the figure to read.
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BODY = {"model": "gpt-4-turbo", "max_tokens": 256,
        "messages": [{"role": "user", "content": "Summarise SPY's last session in one line."}]}
CHUNKS = 20


class _Llm:
    """The router answering at once: a stream of CHUNKS text events, or a whole result."""

    def __init__(self, result: Any, start: Any, events: list[Any]) -> None:
        self.result, self.start, self.events = result, start, events

    async def stream_route(self, req: Any) -> Any:
        yield self.start
        for ev in self.events:
            yield ev
        yield self.result

    async def aroute(self, req: Any) -> Any:
        return self.result


def _stand_ins(cfg: Any) -> tuple[Any, Any, list[Any]]:
    from actors.clients.stream import TextDelta
    from actors.route import RouteResult, RoutingTrace
    from actors.router_stream import StreamStart

    trace = RoutingTrace(request_id="r1", policy="accuracy-first", chosen="gpt-4-turbo")
    result = RouteResult(request_id="r1", provider="gpt-4-turbo", model="gpt-4-turbo",
                         text="x" * CHUNKS, finish_reason="stop", input_tokens=12,
                         output_tokens=CHUNKS, cost_usd=0.001, latency_s=1.0, trace=trace)
    start = StreamStart(request_id="r1", provider="gpt-4-turbo", model="gpt-4-turbo",
                        policy="accuracy-first", simulated=True)
    return result, start, [TextDelta(text="x") for _ in range(CHUNKS)]


def _replica(cfg: Any, llm: _Llm) -> Any:
    """serve/app.py's RouterIngress without Serve: its methods, a stand-in router."""
    from serve import app as app_module
    from serve.spec import ServeSpec

    ours = app_module.RouterIngress.func_or_class.__mro__[1]  # under Serve's ASGI wrapper
    replica = object.__new__(ours)
    replica.config, replica.spec, replica.router_timeout = cfg, ServeSpec.from_config(cfg), 30.0
    replica.token_limit, replica.llm = replica.spec.token_limit(cfg), llm
    return replica


def _old_app(replica: Any, settings: Any) -> Any:
    """The route as it was: FastAPI's body handling and a StreamingResponse."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from serve import native
    from serve import openai_compat as oai
    from serve.errors import install
    from serve.middleware import Gate
    from serve.openai_stream import ChunkWriter

    app = FastAPI()
    app.add_middleware(Gate)
    install(app)
    app.state.gate = settings

    @app.post("/v1/chat/completions")
    async def chat(body: oai.ChatRequest, request: Request) -> Response:
        req = oai.to_route(body, replica.config, replica.token_limit,
                           replica._timeout(body.timeout, request.headers))
        if body.stream:
            source = replica.llm.stream_route(req)
            start = await anext(source)
            writer = ChunkWriter(start.request_id, start.provider, True)
            return StreamingResponse(replica._events(source, writer),
                                     headers={"x-router-request-id": start.request_id},
                                     media_type="text/event-stream")
        r = await replica._route(req, request.headers)
        return JSONResponse(oai.completion(r), headers=native.trace_headers(r))

    return app


async def _one(app: Any, body: bytes, token: str) -> tuple[float, float]:
    """(first body byte, whole answer) in µs for one request through `app`."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"localhost:8000"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {token}".encode()),
                         (b"content-length", str(len(body)).encode())]}
    sent = False
    done = asyncio.Event()
    first = 0.0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal first, status
        if message["type"] == "http.response.body" and status != 200:
            raise RuntimeError(f"status {status}: {message.get('body', b'')[:300]!r}")
        if message["type"] == "http.response.body":
            if not first and message.get("body"):
                first = time.perf_counter()
            if not message.get("more_body"):
                done.set()
        else:
            status = message["status"]

    t0 = time.perf_counter()
    await app(scope, receive, send)
    t1 = time.perf_counter()
    return (first - t0) * 1e6, (t1 - t0) * 1e6


async def run(requests: int) -> None:
    from bench_router import bench_config

    from actors.config import parse_config
    from serve import app as app_module
    from serve.auth import AuthDigests, Verifier, digests
    from serve.hosts import HostAllowList
    from serve.middleware import GateSettings
    from serve.spec import AuthSpec

    tmp = tempfile.mkdtemp(prefix="bench-ingress-")
    cfg = parse_config(bench_config(tmp))
    token = "bench-ingress-token-0123456789"
    auth: AuthDigests = digests(AuthSpec(), {"LLM_ROUTER_API_TOKEN": token})
    settings = GateSettings(Verifier.from_digests(auth), HostAllowList.of(["localhost"]),
                            False, 1 << 20)
    result, start, events = _stand_ins(cfg)
    replica = _replica(cfg, _Llm(result, start, events))
    new = app_module.app
    new.state.gate, new.state.chat_completions = settings, replica.chat
    arms = {"fastapi": _old_app(replica, settings), "plain": new}
    bodies = {"stream": json.dumps({**BODY, "stream": True, "stream_options": {
        "include_usage": True}}).encode(),
              "plain": json.dumps(BODY).encode()}
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(50):  # warm both
        for app in arms.values():
            for body in bodies.values():
                await _one(app, body, token)
    for i in range(requests):
        for kind, body in bodies.items():
            for name, app in (arms.items() if i % 2 else reversed(arms.items())):
                out.setdefault((kind, name), []).append(await _one(app, body, token))
    print(f"{requests} requests per arm and kind, interleaved")
    print("| request | arm | first byte p50 µs | whole answer p50 µs |")
    print("|---|---|---:|---:|")
    for (kind, name), xs in out.items():
        print(f"| {kind} | {name} | {statistics.median(x[0] for x in xs):.0f} | "
              f"{statistics.median(x[1] for x in xs):.0f} |")
    for kind in bodies:
        old = statistics.median(x[0] for x in out[(kind, "fastapi")])
        now = statistics.median(x[0] for x in out[(kind, "plain")])
        print(f"{kind}: first byte plain / fastapi = {now / old:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests per arm and kind")
    args = ap.parse_args()
    asyncio.run(run(args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
