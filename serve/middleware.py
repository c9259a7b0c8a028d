"""The gate in front of the app: Host allow-list, bearer tokens, JSON-only bodies, body size.

One pass over the headers, before any routing (unknown paths get 401 too, and a FastAPI
dependency per route would cost ~8% of a replica's CPU per request):

- `Host` must be on `serve.allowed_hosts` (DNS rebinding), else 400;
- every route but a public `/healthz` (matched on the path Starlette routes on, Serve's
  `route_prefix` stripped) needs the client or the admin token; admin routes declare
  `dependencies=[ADMIN_ONLY]` and check the admin token there, so it is the route that
  matched — not a pattern over paths, which a route prefix once turned into a client
  route — that decides (the dependency runs on the two admin routes only, off the hot path);
- POST/PUT/PATCH need `Content-Type: application/json`, else 415: a browser page can send
  text/plain or form bodies cross-origin without a preflight, never JSON;
- `Content-Length` above the limit is refused at once; a chunked body is counted as it
  arrives and refused as soon as it passes the limit (Starlette's own limiter answers in
  plain text, not in the JSON error shape clients parse).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from starlette._utils import get_route_path  # the path Starlette's router matches on

from serve.auth import Access, Verifier, bearer
from serve.errors import ApiError, bad_request
from serve.hosts import HostAllowList

Scope = dict[str, Any]
HEALTH_PATH = "/healthz"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON = b"application/json"


@dataclass(frozen=True)
class GateSettings:
    """Everything the gate checks, built once per replica."""

    verifier: Verifier
    hosts: HostAllowList
    public_health: bool
    max_body_bytes: int

    def access(self, path: str) -> Access:
        """What a route path needs before routing (admin routes add their own check)."""
        return Access.PUBLIC if path == HEALTH_PATH and self.public_health else Access.CLIENT


async def _admin_only(request: Request) -> None:
    gate: GateSettings = request.app.state.gate
    gate.verifier.check(bearer(request.headers.get("authorization")), Access.ADMIN)


#: `dependencies=[ADMIN_ONLY]` on a route: it needs the admin token (403 when none is set).
ADMIN_ONLY = Depends(_admin_only)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"request body is larger than the limit of "
                    f"{limit} bytes", None, "request_too_large")


def _refusal(gate: GateSettings | None, scope: Scope) -> ApiError | None:
    """The error this request gets before it reaches the app, if any."""
    if gate is None:
        return ApiError(503, "not_ready", "the endpoint is starting", None, "not_ready",
                        {"retry-after": "1"})
    host = auth = ctype = length = None
    for key, value in scope["headers"]:
        if key == b"host":
            host = value
        elif key == b"authorization":
            auth = value
        elif key == b"content-type":
            ctype = value
        elif key == b"content-length":
            length = value
    if not gate.hosts.allows(host):
        shown = host.decode("latin-1")[:100] if host else None
        return bad_request(f"Host {shown!r} is not allowed: add it to serve.allowed_hosts"
                           if shown else "missing Host header", None, "host_not_allowed")
    method = scope["method"]
    try:
        gate.verifier.check(bearer(auth.decode("latin-1") if auth else None),
                            gate.access(get_route_path(scope)))
    except ApiError as err:
        return err
    if method in _BODY_METHODS and (ctype is None or
                                    ctype.split(b";", 1)[0].strip().lower() != _JSON):
        got = ctype.decode("latin-1")[:100] if ctype else "none"
        return ApiError(415, "invalid_request_error", "Content-Type must be application/json "
                        f"(got {got!r})", None, "unsupported_media_type")
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            return bad_request("invalid Content-Length header")
        if size > gate.max_body_bytes:
            return _too_large(gate.max_body_bytes)
    return None


class Gate:
    """Pure ASGI middleware; its settings (`app.state.gate`) are filled in by the replica
    at start. Until then every request gets 503: nothing is ever served unchecked."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gate: GateSettings | None = getattr(scope["app"].state, "gate", None)
        err = _refusal(gate, scope)
        if err is not None:
            await _send(send, err)
            return
        assert gate is not None
        limit = gate.max_body_bytes
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit)  # answered by the app's ApiError handler
            return message

        await self.app(scope, counted, send)


async def _send(send: Any, err: ApiError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
