"""The simulator's HTTP surface as a bare ASGI app: vendor endpoints plus ``/_sim`` admin.

No framework: routing is a few string comparisons, which keeps one core serving thousands of
attempts a second (see scripts/bench_simulator.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from actors.simulator.batches import Batches, BatchSettings
from actors.simulator.engine import Reply, Simulator

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_OPENAI_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_GEMINI_PREFIX = "/v1beta/models/"
_GEMINI_SUFFIX = ":generateContent"
_GEMINI_STREAM_SUFFIX = ":streamGenerateContent"
_PROFILES_PREFIX = "/_sim/profiles/"


def _json(status: int, obj: Any) -> Reply:
    return Reply(status, json.dumps(obj).encode())


class SimulatedCut(Exception):
    """Raised to make the server drop a connection mid-answer (the `cut` fault); the
    server's log filter (actors/simulator/server.py) keeps it out of the error log."""


class SimulatorApp:
    """ASGI callable serving one `Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.batches = Batches(sim)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        reply = await self._route(scope, body)
        if reply.hang_s > 0:
            try:
                await asyncio.wait_for(_disconnected(receive), reply.hang_s)
                return  # the client gave up first; nothing to send
            except TimeoutError:
                pass
        if reply.frames is not None:
            await self._stream(reply, receive, send)
            return
        body = reply.body
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": reply.headers + [(b"content-length", str(len(body)).encode())],
            }
        )
        if reply.cut:
            await send({"type": "http.response.body", "body": body[: len(body) // 2],
                        "more_body": True})
            raise SimulatedCut()
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, reply: Reply, receive: Receive, send: Send) -> None:
        """Frames as they are generated; a client that leaves stops the generation."""
        assert reply.frames is not None
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": reply.headers})
        left = asyncio.Event()
        watcher = asyncio.ensure_future(_mark_disconnect(receive, left))
        try:
            for i, frame in enumerate(reply.frames):
                if i and reply.gap_s > 0:
                    try:
                        await asyncio.wait_for(left.wait(), reply.gap_s)
                    except TimeoutError:
                        pass
                if left.is_set():
                    self.sim.stats.cancelled(reply.model)
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if reply.cut:
                raise SimulatedCut()
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()

    async def _route(self, scope: dict[str, Any], body: bytes) -> Reply:
        path: str = scope["path"]
        method: str = scope["method"]
        if Batches.serves(path):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            reply = await self.batches.route(method, path, headers, body,
                                             scope.get("query_string", b"").decode("latin-1"))
            if reply is not None:
                return reply
        if method == "POST":
            api = None
            model = None
            stream = False
            if path in _OPENAI_PATHS:
                api = "openai"
            elif path == "/v1/messages":
                api = "anthropic"
            elif path.startswith(_GEMINI_PREFIX) and path.endswith(_GEMINI_SUFFIX):
                api = "gemini"
                model = path[len(_GEMINI_PREFIX) : -len(_GEMINI_SUFFIX)]
            elif path.startswith(_GEMINI_PREFIX) and path.endswith(_GEMINI_STREAM_SUFFIX):
                api, stream = "gemini", True
                model = path[len(_GEMINI_PREFIX) : -len(_GEMINI_STREAM_SUFFIX)]
            if api is not None:
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                query = scope.get("query_string", b"").decode("latin-1")
                return await self.sim.handle(api, headers, body, query, model, stream)
        if path.startswith("/_sim/"):
            return self._admin(method, path, body)
        return _json(404, {"error": {"message": f"no route for {method} {path}"}})

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        sim = self.sim
        if path == "/_sim/health" and method == "GET":
            return _json(200, {"status": "ok", "latency_scale": sim.latency_scale})
        if path == "/_sim/stats" and method == "GET":
            return Reply(200, sim.stats.snapshot().model_dump_json().encode())
        if path == "/_sim/batches/stats" and method == "GET":
            return Reply(200, self.batches.stats().model_dump_json().encode())
        if path == "/_sim/batches" and method in ("GET", "PUT"):
            if method == "PUT":
                try:
                    self.batches.settings = BatchSettings.model_validate_json(body or b"{}")
                except ValidationError as exc:
                    return _json(400, {"error": {"message": str(exc)}})
            return Reply(200, self.batches.settings.model_dump_json().encode())
        if path == "/_sim/stats/reset" and method == "POST":
            sim.stats.reset()
            self.batches.reset_stats()
            return _json(200, {"status": "ok"})
        if path == "/_sim/profiles" and method == "GET":
            return _json(200, {m: p.model_dump() for m, p in sim.profiles.all().items()})
        if path.startswith(_PROFILES_PREFIX) and len(path) > len(_PROFILES_PREFIX):
            model = path[len(_PROFILES_PREFIX) :]
            if method == "PUT":
                try:
                    fields = json.loads(body or b"{}")
                    if not isinstance(fields, dict):
                        raise ValueError("body must be a JSON object of profile fields")
                    profile = sim.profiles.patch(model, fields)
                except (ValueError, ValidationError) as exc:
                    return _json(400, {"error": {"message": str(exc)}})
                return Reply(200, profile.model_dump_json().encode())
            if method == "DELETE":
                return Reply(200, sim.profiles.restore(model).model_dump_json().encode())
        return _json(404, {"error": {"message": f"no admin route for {method} {path}"}})


async def _mark_disconnect(receive: Receive, left: asyncio.Event) -> None:
    await _disconnected(receive)
    left.set()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
