"""The gate in front of the app: bearer-token auth, then the request-body size limit.

`Content-Length` above the limit is refused at once; a chunked body is counted as it arrives
and refused as soon as it passes the limit, so a client cannot make a replica buffer gigabytes.
(Starlette's own limiter answers a declared oversize body in plain text, not in the JSON
error shape clients parse.)
"""

from __future__ import annotations

import json
from typing import Any

from serve.auth import bearer, check, needs
from serve.errors import ApiError

Scope = dict[str, Any]


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"request body is larger than the limit of "
                    f"{limit} bytes", None, "request_too_large")


class Gate:
    """Pure ASGI middleware; settings are read from `app.state` (tokens, public_health,
    max_body_bytes), which the replica fills in at start."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        need = needs(scope["method"], scope["path"], state.public_health)
        if need is not None:
            try:
                check(state.tokens, bearer(scope["headers"]), admin=need == "admin")
            except ApiError as err:
                await _send(send, err)
                return
        limit = state.max_body_bytes
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = -1
                if size < 0:
                    err = ApiError(400, "invalid_request_error", "invalid Content-Length header")
                    await _send(send, err)
                    return
                if size > limit:
                    await _send(send, _too_large(limit))
                    return
                break
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
