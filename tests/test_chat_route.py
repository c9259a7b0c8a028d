"""The chat completions route as plain ASGI (serve/chat_route.py), without Ray: bad bodies get
the answers a FastAPI route gave, the gate still guards it, and a stream's chunks leave one by
one as they arrive."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serve import chat_route
from serve import openai_compat as oai
from serve.errors import install
from serve.hosts import HostAllowList
from serve.middleware import Gate, GateSettings
from tests.test_serve_units import C, verifier

JSON = {"content-type": "application/json", "authorization": f"Bearer {C}"}
OK = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
BAD_BODIES = [
    b"", b"{", b"[1]", b'"text"', b"null", b"{}", b'{"model": 5, "messages": []}',
    b'{"model": "auto", "messages": [], "bogus": 1}',
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
    b'{"model": "auto", "messages": [{"role": "robot", "content": "hi"}]}',
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [{}]}',
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], '
    b'"stream_options": {"include_usage": 1}}',
]


def _apps(limit: int = 10_000) -> tuple[FastAPI, FastAPI]:
    """The same model behind a FastAPI route (how the route used to be) and behind
    `ReplicaRoute` (how it is now), both gated and with the app's error handlers."""
    settings = GateSettings(verifier(), HostAllowList.of(["localhost"]), False, limit)
    old, new = FastAPI(), FastAPI()
    for app in (old, new):
        app.add_middleware(Gate)
        install(app)
        app.state.gate = settings

    @old.post("/v1/chat/completions")
    async def chat(body: oai.ChatRequest) -> dict[str, Any]:
        return {"model": body.model}

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        body = chat_route.parse(oai.ChatRequest, await chat_route.read_body(receive))
        from fastapi.responses import JSONResponse
        await JSONResponse({"model": body.model})(scope, receive, send)

    new.router.add_route("/v1/chat/completions", chat_route.ReplicaRoute("chat"),
                         methods=["POST"], include_in_schema=False)
    new.state.chat = handler
    return old, new


async def _post(app: FastAPI, content: Any, method: str = "POST") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as c:
        return await c.request(method, "/v1/chat/completions", content=content, headers=JSON)


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_a_bad_body_gets_the_answer_the_fastapi_route_gave(body):
    old, new = _apps()
    was, now = await _post(old, body), await _post(new, body)
    assert now.status_code == was.status_code == 400, now.text
    assert now.json() == was.json()
    assert now.json()["error"]["type"] == "invalid_request_error"


async def test_a_good_body_and_the_wrong_method_as_before():
    old, new = _apps()
    assert (await _post(new, OK)).json() == (await _post(old, OK)).json() == {"model": "auto"}
    was, now = await _post(old, OK, "GET"), await _post(new, OK, "GET")
    assert now.status_code == was.status_code == 405 and now.json() == was.json()


async def test_a_body_that_is_not_utf8_is_a_400_naming_it():
    _, new = _apps()
    r = await _post(new, b'{"model": "\xff"}')
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_invalid"
    assert "UTF-8" in r.json()["error"]["message"]


async def test_the_gate_still_guards_the_route():
    _, new = _apps(limit=100)

    async def chunks():
        for _ in range(5):
            yield b"x" * 40

    r = await _post(new, chunks())  # chunked: counted as it arrives
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=new),
                                 base_url="http://localhost") as anon:
        r = await anon.post("/v1/chat/completions", content=OK,
                            headers={"content-type": "application/json"})
    assert r.status_code == 401


async def test_a_stream_sends_each_chunk_as_it_arrives_and_closes_its_source():
    """The second chunk is held back until the first has left: a response that buffered
    (or waited for the source's end) would hang here."""
    sent: list[dict[str, Any]] = []
    first_out = asyncio.Event()
    closed = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body") == b"data: 1\n\n":
            first_out.set()

    async def source():
        try:
            yield "data: 1\n\n"
            await first_out.wait()
            yield "data: 2\n\n"
        finally:
            closed.set()

    await asyncio.wait_for(chat_route.send_stream(send, {"x-router-provider": "p"}, source()),
                           10)
    start, *bodies = sent
    assert start["status"] == 200
    assert (b"content-type", chat_route.SSE_TYPE) in start["headers"]
    assert (b"x-router-provider", b"p") in start["headers"]
    assert [b["body"] for b in bodies] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert [b["more_body"] for b in bodies] == [True, True, False]
    assert closed.is_set()


async def test_the_headers_leave_with_the_first_chunk_not_before_it():
    """Sent alone, the headers woke HAProxy and the client between them and the first
    token: nothing goes out until the first chunk is there, then both in one step."""
    sent: list[dict[str, Any]] = []
    release = asyncio.Event()
    asked = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def source():
        asked.set()
        await release.wait()
        yield "data: 1\n\n"

    task = asyncio.ensure_future(chat_route.send_stream(send, {}, source()))
    await asyncio.wait_for(asked.wait(), 10)
    await asyncio.sleep(0)  # a turn in which the old code sent the headers
    assert sent == []
    release.set()
    await asyncio.wait_for(task, 10)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body",
                                         "http.response.body"]
    assert sent[1]["body"] == b"data: 1\n\n" and sent[2] == {
        "type": "http.response.body", "body": b"", "more_body": False}


async def test_a_stream_without_chunks_still_answers_200_and_ends():
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def source():
        return
        yield  # an async generator that yields nothing

    await asyncio.wait_for(chat_route.send_stream(send, {}, source()), 10)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200 and sent[1]["more_body"] is False


async def test_a_client_gone_mid_stream_closes_the_source():
    closed = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message.get("body"):
            raise OSError("client went away")

    async def source():
        try:
            while True:
                yield "data: x\n\n"
        finally:
            closed.set()

    with pytest.raises(OSError):
        await chat_route.send_stream(send, {}, source())
    assert closed.is_set()


def test_the_route_stays_in_the_openapi_schema():
    from serve.app import app

    schema = app.openapi()
    post = schema["paths"]["/v1/chat/completions"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ChatRequest"
    body = schema["components"]["schemas"]["ChatRequest"]
    assert {"model", "messages", "stream"} <= set(body["properties"])
    assert "/v1/analyze" in schema["paths"]  # FastAPI's own routes as before


async def test_a_client_gone_while_sending_its_body_gets_no_answer_and_no_error():
    _, new = _apps()
    messages = iter([{"type": "http.request", "body": b'{"model": ', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {C}".encode())]}
    await new(scope, receive, send)  # FastAPI answered 400 to nobody; the 500 handler, worse
    assert sent == []
