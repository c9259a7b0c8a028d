"""Streaming at the client level: SSE decoding and each format's stream parser against
captured streams (pure, any chunk boundaries), then `send_stream` through the real transport
against the simulator: events as they arrive, usage from the final event, errors before and
during the stream, a cut stream's estimated usage, and a cancelled stream stopping upstream."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from actors.clients import Completion, make_client
from actors.clients.anthropic import AnthropicStream
from actors.clients.capabilities import ANTHROPIC_JSON_TOOL
from actors.clients.faults import BadBody, ErrorEvent, event_error
from actors.clients.gemini import GeminiStream
from actors.clients.openai import OpenAIStream
from actors.clients.sse import SSEDecoder
from actors.clients.stream import Done, Finish, StreamError, StreamParser, TextDelta, ToolCallDelta
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError
from actors.simulator import SimulatorProcess, simulator_base_url
from tests.waiting import wait_until

MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4-turbo", "gemini": "gemini-2.5-pro"}
ASK = Completion(messages=[{"role": "user", "content": "Analyse SPY, regime: bull, close: 500"}],
                 max_tokens=400)


def spec(api: str, **over: Any) -> ProviderSpec:
    fields: dict[str, Any] = dict(
        name=f"p-{api}", api=api, model=MODELS[api], base_url="https://api.example.invalid/v1",
        api_key_env="NO_SUCH_KEY", input_cost_per_mtok=2.0, output_cost_per_mtok=10.0,
        cached_input_cost_per_mtok=0.5, max_input_tokens=10_000, max_output_tokens=2000,
        timeout_s=5, rpm=1000, tpm=10**6)
    return ProviderSpec(**(fields | over))


def _data(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj)}\n\n".encode()


OPENAI_BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
               "model": "gpt-4o"}


def _oa(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return _data({**OPENAI_BASE, "choices": choices, **extra})


OPENAI_STREAM = b"".join([
    _oa({"role": "assistant", "content": ""}), _oa({"content": "Long "}), _oa({"content": "SPY."}),
    _oa({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                         "function": {"name": "get_price", "arguments": ""}}]}),
    _oa({"tool_calls": [{"index": 0, "function": {"arguments": "{\"sym"}}]}),
    _oa({"tool_calls": [{"index": 0, "function": {"arguments": "bol\": \"SPY\"}"}}]}),
    _oa({}, "tool_calls"),
    _oa(None, usage={"prompt_tokens": 900, "completion_tokens": 12, "total_tokens": 912,
                     "prompt_tokens_details": {"cached_tokens": 512}}),
    b"data: [DONE]\n\n"])

ANTHROPIC_STREAM = b"".join([
    _data({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 50, "output_tokens": 1}}}, "message_start"),
    _data({"type": "content_block_start", "index": 0,
           "content_block": {"type": "thinking", "thinking": ""}}, "content_block_start"),
    _data({"type": "content_block_delta", "index": 0,
           "delta": {"type": "thinking_delta", "thinking": "hmm"}}, "content_block_delta"),
    _data({"type": "content_block_stop", "index": 0}, "content_block_stop"),
    _data({"type": "ping"}, "ping"),
    _data({"type": "content_block_start", "index": 1,
           "content_block": {"type": "text", "text": ""}}, "content_block_start"),
    _data({"type": "content_block_delta", "index": 1,
           "delta": {"type": "text_delta", "text": "Checking."}}, "content_block_delta"),
    _data({"type": "content_block_stop", "index": 1}, "content_block_stop"),
    _data({"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "get_price", "input": {}}},
        "content_block_start"),
    _data({"type": "content_block_delta", "index": 2, "delta": {
        "type": "input_json_delta", "partial_json": "{\"symbol\": \"SP"}}, "content_block_delta"),
    _data({"type": "content_block_delta", "index": 2, "delta": {
        "type": "input_json_delta", "partial_json": "Y\"}"}}, "content_block_delta"),
    _data({"type": "content_block_stop", "index": 2}, "content_block_stop"),
    _data({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
           "usage": {"output_tokens": 40, "output_tokens_details": {"thinking_tokens": 10}}},
          "message_delta"),
    _data({"type": "message_stop"}, "message_stop")])


def _gm(parts: list[dict[str, Any]], finish: str | None = None, **usage: int) -> bytes:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return (b"data: " + json.dumps({"candidates": [cand], "usageMetadata": {
        "promptTokenCount": 300, **usage}, "responseId": "r1"}).encode() + b"\r\n\r\n")


GEMINI_STREAM = b"".join([
    _gm([{"text": "Long "}], totalTokenCount=300),
    _gm([{"text": "SPY."}]),
    _gm([{"functionCall": {"name": "get_price", "args": {"symbol": "SPY"}}}], "STOP",
        candidatesTokenCount=20, thoughtsTokenCount=80, cachedContentTokenCount=256,
        totalTokenCount=400)])


def run(parser: StreamParser, raw: bytes, step: int) -> list[Any]:
    """Feed `raw` in `step`-byte chunks, as a network might cut it."""
    decoder, events = SSEDecoder(), []
    for i in range(0, len(raw), step):
        for name, data in decoder.feed(raw[i:i + step]):
            events += parser.feed(name, data)
    for name, data in decoder.flush():
        events += parser.feed(name, data)
    parser.at_end()
    return events


@pytest.mark.parametrize("step", [1, 7, 10_000])
@pytest.mark.parametrize(("api", "cls", "raw", "usage"), [
    ("openai", OpenAIStream, OPENAI_STREAM, (900, 12, 512, 0, 0)),
    ("anthropic", AnthropicStream, ANTHROPIC_STREAM, (175, 40, 100, 50, 10)),
    ("gemini", GeminiStream, GEMINI_STREAM, (300, 100, 256, 0, 80)),
])
def test_captured_streams_parse_the_same_at_any_chunk_boundary(api, cls, raw, usage,
                                                               step: int) -> None:
    parser = cls(spec(api), ASK)
    events = run(parser, raw, step)
    assert parser.state.complete
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == ("Checking." if api == "anthropic" else "Long SPY.")
    starts = [e for e in events if isinstance(e, ToolCallDelta) and e.name]
    assert [s.name for s in starts] == ["get_price"]
    assert [e.finish_reason for e in events if isinstance(e, Finish)] == ["tool_calls"]
    r = parser.state.result(0.5, 0.1)
    assert not r.usage_estimated and r.tool_calls[0].args() == {"symbol": "SPY"}
    assert (r.input_tokens, r.output_tokens, r.cached_input_tokens, r.cache_write_tokens,
            r.reasoning_tokens) == usage
    assert r.cost_usd == pytest.approx(((usage[0] - usage[2] - usage[3]) * 2.0 + usage[2] * 0.5
                                        + usage[3] * 2.0 + usage[1] * 10.0) / 1e6)


def test_anthropic_json_tool_streams_as_text() -> None:
    raw = ANTHROPIC_STREAM.replace(b'"name": "get_price"', f'"name": "{ANTHROPIC_JSON_TOOL}"'
                                   .encode())
    parser = AnthropicStream(spec("anthropic"), ASK)
    events = run(parser, raw, 13)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == 'Checking.{"symbol": "SPY"}'
    assert parser.state.result(0.1, None).finish_reason == "stop"  # an answer, not a call


def test_cut_stream_result_is_an_estimate() -> None:
    parser = OpenAIStream(spec("openai"), ASK)
    cut = OPENAI_STREAM.rindex(b"\n\n", 0, OPENAI_STREAM.index(b"tool_calls")) + 2
    run(parser, OPENAI_STREAM[:cut], 5)
    assert not parser.state.complete
    r = parser.state.result(0.2, 0.05)
    assert r.usage_estimated and r.text.startswith("Long SPY.")
    assert r.input_tokens > 0 and r.output_tokens >= 3 and r.finish_reason == "other"


@pytest.mark.parametrize(("cls", "raw", "error_class"), [
    (AnthropicStream, _data({"type": "error", "error": {"type": "overloaded_error",
                                                       "message": "Overloaded"}}, "error"),
     ErrorClass.OVERLOADED),
    (OpenAIStream, _data({"error": {"message": "boom", "type": "server_error", "code": None}}),
     ErrorClass.SERVER),
    (GeminiStream, _data({"error": {"code": 429, "message": "quota",
                                    "status": "RESOURCE_EXHAUSTED"}}), ErrorClass.RATE_LIMITED),
])
def test_error_events_are_classified(cls, raw: bytes, error_class: ErrorClass) -> None:
    api = {AnthropicStream: "anthropic", OpenAIStream: "openai", GeminiStream: "gemini"}[cls]
    with pytest.raises(ErrorEvent) as exc:
        run(cls(spec(api), ASK), raw, 3)
    assert event_error(exc.value.body)[0] is error_class


@pytest.mark.parametrize("cls", [AnthropicStream, OpenAIStream, GeminiStream])
def test_malformed_events_are_bad_bodies(cls) -> None:
    api = {AnthropicStream: "anthropic", OpenAIStream: "openai", GeminiStream: "gemini"}[cls]
    with pytest.raises(BadBody):
        run(cls(spec(api), ASK), b"data: {\"candidates\": <html>\n\n", 4)


def test_groq_usage_under_x_groq() -> None:
    raw = _oa({"content": "Up"}) + _oa({}, "stop", x_groq={"usage": {
        "prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}) + b"data: [DONE]\n\n"
    parser = OpenAIStream(spec("openai"), ASK)
    run(parser, raw, 9)
    r = parser.state.result(0.1, None)
    assert (r.input_tokens, r.output_tokens, r.usage_estimated) == (7, 1, False)


# ---------------------------------------------------------------- through the simulator

FAST = {"base_ms": 0, "jitter": 0, "ms_per_token": 0}


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=1.0, seed=5) as s:
        yield s


def _model(sim: SimulatorProcess, **fields: Any) -> str:
    model = f"s-{uuid.uuid4().hex[:8]}"
    sim.set_profile(model, **FAST, **fields)
    return model


def client(sim: SimulatorProcess, api: str, model: str | None = None, **over: Any):
    s = spec(api, **({"model": model} if model else {}), **over)
    return make_client(s, base_url=simulator_base_url(api, sim.url))


async def collect(stream) -> list[Any]:
    return [event async for event in stream]


@pytest.mark.parametrize("api", list(MODELS))
async def test_send_stream_events_and_final_usage(sim, api: str) -> None:
    model = _model(sim, stream_chunks=8, thinking_tokens=50)
    c = client(sim, api, model)
    try:
        stream = c.send_stream(ASK)
        events = await collect(stream)
    finally:
        await c.aclose()
    texts = [e for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert isinstance(done, Done) and len(texts) > 3
    r = done.result
    assert r.text == "".join(t.text for t in texts) and "direction" in r.text
    assert not r.usage_estimated and r.input_tokens > 0 and r.output_tokens > 0
    assert r.first_token_s is not None and stream.first_byte_s is not None
    assert r.reasoning_tokens == (50 if api == "gemini" else 0)


async def test_send_stream_tool_call_and_json(sim) -> None:
    tools = [{"type": "function", "function": {"name": "get_price", "parameters": {
        "type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}}}]
    schema = {"type": "object", "properties": {"direction": {"enum": ["long", "short", "flat"]}},
              "required": ["direction"]}
    for api in MODELS:
        c = client(sim, api, _model(sim))
        try:
            called = (await collect(c.send_stream(Completion(
                messages=ASK.messages, tools=tools, max_tokens=300))))[-1].result
            answered = (await collect(c.send_stream(Completion(
                messages=ASK.messages, max_tokens=300, response_format={
                    "type": "json_schema", "json_schema": {"name": "s", "schema": schema}}))))[-1]
        finally:
            await c.aclose()
        assert called.finish_reason == "tool_calls", api
        assert called.tool_calls[0].args() == {"symbol": "SPY"}
        assert json.loads(answered.result.text)["direction"] in ("long", "short", "flat"), api


@pytest.mark.parametrize("api", list(MODELS))
async def test_errors_before_the_stream_are_plain_provider_errors(sim, api: str) -> None:
    c = client(sim, api, _model(sim, rate_limit=1.0, retry_after_s=2))
    try:
        with pytest.raises(ProviderError) as exc:
            await collect(c.send_stream(ASK))
    finally:
        await c.aclose()
    assert not isinstance(exc.value, StreamError)
    assert (exc.value.error_class, exc.value.retry_after) == (ErrorClass.RATE_LIMITED, 2.0)


@pytest.mark.parametrize(("fault", "error_class"), [
    ({"stream_error": 1.0}, ErrorClass.OVERLOADED),
    ({"cut": 1.0}, ErrorClass.CONNECTION),
    ({"malformed": 1.0, "malformed_kind": "not_json"}, ErrorClass.INVALID_RESPONSE),
])
@pytest.mark.parametrize("api", list(MODELS))
async def test_faults_mid_stream_carry_the_partial_answer(sim, api: str, fault: dict,
                                                          error_class: ErrorClass) -> None:
    c = client(sim, api, _model(sim, stream_chunks=10, **fault))
    seen: list[Any] = []
    try:
        with pytest.raises(StreamError) as exc:
            async for event in c.send_stream(ASK):
                seen.append(event)
    finally:
        await c.aclose()
    err = exc.value
    assert err.error_class is error_class and err.started and seen
    partial = err.partial
    assert partial.usage_estimated and partial.text == "".join(
        e.text for e in seen if isinstance(e, TextDelta))
    assert partial.input_tokens > 0 and partial.output_tokens > 0 and partial.cost_usd > 0


@pytest.mark.parametrize("api", list(MODELS))
async def test_stream_without_usage_is_complete_but_estimated(sim, api: str) -> None:
    c = client(sim, api, _model(sim, malformed=1.0, malformed_kind="no_usage"))
    try:
        done = (await collect(c.send_stream(ASK)))[-1]
    finally:
        await c.aclose()
    assert isinstance(done, Done) and done.result.usage_estimated and done.result.text


async def test_a_cancelled_stream_stops_upstream(sim) -> None:
    model = _model(sim, stream_chunks=20, stream_interval_ms=25)
    c = client(sim, "anthropic", model)
    try:
        stream = c.send_stream(ASK)
        first = await stream.__anext__()
        assert isinstance(first, TextDelta) and stream.started
        partial = stream.partial()
        await stream.aclose()
    finally:
        await c.aclose()
    assert partial.usage_estimated and partial.input_tokens > 0
    # the server was still generating when the client left: the answer was not buffered
    wait_until(lambda: sim.stats().models[model].streams_cancelled == 1)


async def test_stream_idle_timeout_is_a_timeout(sim) -> None:
    c = client(sim, "openai", _model(sim, timeout=1.0, hang_s=5), timeout_s=0.3)
    try:
        with pytest.raises(ProviderError) as exc:
            await asyncio.wait_for(collect(c.send_stream(ASK)), 10)
    finally:
        await c.aclose()
    assert exc.value.error_class is ErrorClass.TIMEOUT
