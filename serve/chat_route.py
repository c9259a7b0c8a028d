"""`POST /v1/chat/completions` as a plain ASGI route, not a FastAPI one.

Every chat request, and every streamed token, takes this route. FastAPI's handler (the
endpoint wrapper, reading the body, solving the `self` dependency Serve injects) and
Starlette's `StreamingResponse` (a task group and a disconnect listener per streamed
response) came to ~1–2 ms of a first token on the 2-core machine (BENCHMARKS.md,
"Streaming TTFT round 2"). Here:

- the body is read and validated as FastAPI would (`parse`: the same model, the same
  python-mode validation, the same error locations), so a bad body gets the same 400;
- errors are raised, as from a FastAPI route, and answered by the handlers `serve.errors`
  installs on the app (the route runs inside Starlette's exception middleware);
- a stream's events go out as ASGI body messages as they arrive (`send_stream`). A client
  that goes away is seen by Serve, which cancels the request, or by a send that fails;
  either way the source is closed, which closes the router's and the provider's streams.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from serve.errors import from_validation

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)
#: What Starlette's `StreamingResponse(media_type="text/event-stream")` sent.
SSE_TYPE = b"text/event-stream; charset=utf-8"


class ReplicaRoute:
    """A plain ASGI app for one route: calls the handler the replica put on `app.state`
    under `attr` when it started (the gate answers 503 until then)."""

    def __init__(self, attr: str) -> None:
        self.attr = attr

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await getattr(scope["app"].state, self.attr)(scope, receive, send)
        except ClientDisconnect:  # gone while sending its body: nobody to answer, no error
            pass


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the gate's receive wrapper refuses one past the limit)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse(model: type[M], raw: bytes) -> M:
    """`raw` as `model`, validated as FastAPI validates a JSON body parameter: parsed with
    `json.loads`, then python-mode validation; error locations start at `body`."""
    if not raw:
        raise from_validation([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                "input": None}])
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise from_validation([{"type": "json_invalid", "loc": ("body", exc.pos),
                                "msg": "JSON decode error", "input": {},
                                "ctx": {"error": exc.msg}}]) from None
    except ValueError:  # not UTF-8 (FastAPI: "There was an error parsing the body")
        raise from_validation([{"type": "json_invalid", "loc": ("body",), "msg": "not UTF-8",
                                "input": {}, "ctx": {"error": "the body is not UTF-8"}}]
                              ) from None
    try:
        return model.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        raise from_validation([{**e, "loc": ("body", *e["loc"])}
                               for e in exc.errors(include_url=False)]) from None


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_stream(send: Send, headers: dict[str, str], chunks: AsyncIterator[str]) -> None:
    """A 200 server-sent-event stream: the headers with the first chunk, then each chunk as
    it comes (never buffered), then the end. `chunks` is closed whatever happens.

    The headers wait for the first chunk (the router sends it in the same frame as the
    start, so it is there already) and leave with it in one loop step: sent alone, they
    woke HAProxy and the client, which took the CPU from this process before it sent the
    first token (~1 ms of every first token on the 2-core machine, BENCHMARKS.md
    "Streaming TTFT round 3")."""
    async with aclosing(chunks):  # type: ignore[type-var]
        first = await anext(chunks, None)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", SSE_TYPE), *header_list(headers)]})
        if first is not None:
            await send({"type": "http.response.body", "body": first.encode(),
                        "more_body": True})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk.encode(),
                            "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def document(app: FastAPI, path: str, model: type[BaseModel], summary: str) -> None:
    """Keep a plain ASGI POST route in the app's OpenAPI schema (/docs), which FastAPI
    builds from its own routes only: `model` as the JSON body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            known = schema.setdefault("components", {}).setdefault("schemas", {})
            known.update({**body.pop("$defs", {}), model.__name__: body})
            ref = {"$ref": f"#/components/schemas/{model.__name__}"}
            schema["paths"][path] = {"post": {
                "summary": summary,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": ref}}},
                "responses": {"200": {"description": "Successful Response"}}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
