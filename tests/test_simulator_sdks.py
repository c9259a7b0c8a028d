"""The simulator as the official SDKs see it: every body and every streamed event validated
with the SDKs' own types, and the SDK clients driving tools, structured outputs, streams,
thinking and cached tokens in all three formats."""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

import anthropic
import httpx
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from google import genai
from google.genai import types as gtypes
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject
from pydantic import BaseModel, TypeAdapter

from actors.clients.sse import SSEDecoder
from actors.simulator import SimulatorProcess, simulator_base_url

PROMPT = "Analyse SPY. timeframe: 4h, regime: bull, close: 500.0. Answer as JSON."
PRICE_TOOL = {"name": "get_price", "description": "Last price of a symbol",
              "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}},
                             "required": ["symbol"]}}
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)


class Signal(BaseModel):
    direction: Literal["long", "short", "flat"]
    confidence: float
    rationale: str


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0, seed=11) as s:
        yield s


@pytest.fixture(scope="module")
def oa(sim):
    return openai.OpenAI(base_url=simulator_base_url("openai", sim.url), api_key="x",
                         max_retries=0)


@pytest.fixture(scope="module")
def an(sim):
    return anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def gc(sim):
    return genai.Client(api_key="x", http_options=gtypes.HttpOptions(base_url=sim.url,
                                                                     api_version="v1beta"))


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _events(sim: SimulatorProcess, path: str, headers: dict[str, str],
            body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(event name, parsed data) of a raw SSE response; `[DONE]` kept as a string."""
    decoder, out = SSEDecoder(), []
    with httpx.Client(base_url=sim.url, timeout=10, trust_env=False) as http, \
            http.stream("POST", path, headers=headers, json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        for chunk in r.iter_bytes():
            out += decoder.feed(chunk)
    out += decoder.flush()
    return [(name, data if data == "[DONE]" else json.loads(data)) for name, data in out]


# ---------------------------------------------------------------- every event, SDK types


@pytest.mark.parametrize("extra", [{}, {"tools": [{"type": "function", "function": PRICE_TOOL}]},
                                   {"n": 2, "logprobs": True, "top_logprobs": 2}])
def test_openai_stream_events_are_chat_completion_chunks(sim, extra: dict) -> None:
    body = {"model": "gpt-4-turbo", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 200, "stream": True, "stream_options": {"include_usage": True}, **extra}
    events = _events(sim, "/v1/chat/completions", {"authorization": "Bearer k"}, body)
    assert events[-1][1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(data) for _, data in events[:-1]]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == (["tool_calls"] if "tools" in extra else ["stop"] * extra.get("n", 1))
    if "tools" in extra:
        calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls or ()]
        assert calls[0].id and calls[0].function.name == "get_price"
        args = json.loads("".join(t.function.arguments or "" for t in calls))
        assert args["symbol"] == "SPY"
    if "logprobs" in extra:
        lps = [t for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.content]
        assert lps and all(len(t.top_logprobs) == 2 for t in lps)


@pytest.mark.parametrize("extra", [
    {}, {"tools": [{"name": "get_price", "input_schema": PRICE_TOOL["parameters"]}]},
    {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2000}])
def test_anthropic_stream_events_are_raw_message_stream_events(sim, extra: dict) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 300, "stream": True,
            "messages": [{"role": "user", "content": PROMPT}], **extra}
    events = _events(sim, "/v1/messages", {"x-api-key": "k"}, body)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    parsed = [ANTHROPIC_EVENT.validate_python(data) for name, data in events if name != "ping"]
    assert all(e.type == name for e, (name, _) in zip(parsed, [e for e in events
                                                              if e[0] != "ping"], strict=True))
    delta = parsed[-2]
    kinds = [e.content_block.type for e in parsed if e.type == "content_block_start"]
    if "tools" in extra:
        assert kinds == ["tool_use"] and delta.delta.stop_reason == "tool_use"
    elif "thinking" in extra:
        assert kinds == ["thinking", "text"]
        assert delta.usage.output_tokens_details.thinking_tokens > 0
    else:
        assert kinds == ["text"] and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0


@pytest.mark.parametrize("extra", [{}, {"tools": [{"functionDeclarations": [
    {"name": "get_price", "parametersJsonSchema": PRICE_TOOL["parameters"]}]}]},
    {"generationConfig": {"candidateCount": 2, "maxOutputTokens": 700}}])
def test_gemini_stream_events_are_generate_content_responses(sim, extra: dict) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
            "generationConfig": {"maxOutputTokens": 700}, **extra}
    events = _events(sim, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                     {"x-goog-api-key": "k"}, body)
    chunks = [gtypes.GenerateContentResponse.model_validate(data) for _, data in events]
    last = chunks[-1]
    n = extra.get("generationConfig", {}).get("candidateCount", 1)
    assert last.usage_metadata.thoughts_token_count == 400 * n  # thinks unless told not to
    assert last.usage_metadata.candidates_token_count > 0
    finished = [c for ch in chunks for c in ch.candidates or () if c.finish_reason]
    assert len(finished) == n
    if "tools" in extra:
        calls = [p.function_call for ch in chunks for c in ch.candidates for p in c.content.parts
                 if p.function_call]
        assert calls[0].name == "get_price" and calls[0].args["symbol"] == "SPY"


@pytest.mark.parametrize("api", ["anthropic", "openai", "gemini"])
def test_injected_stream_faults_are_well_formed_events(sim, api: str) -> None:
    """A mid-stream error event is in the vendor's error shape; the events before it are
    ordinary events of their SDK type."""
    model = _fresh("sfault")
    sim.set_profile(model, stream_error=1.0)
    if api == "anthropic":
        events = _events(sim, "/v1/messages", {"x-api-key": "k"}, {
            "model": model, "max_tokens": 300, "stream": True,
            "messages": [{"role": "user", "content": PROMPT}]})
        assert events[-1][0] == "error"
        assert ErrorResponse.model_validate(events[-1][1]).error.type == "overloaded_error"
        for name, data in events[:-1]:
            if name != "ping":
                ANTHROPIC_EVENT.validate_python(data)
    elif api == "openai":
        events = _events(sim, "/v1/chat/completions", {"authorization": "Bearer k"}, {
            "model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
        assert ErrorObject.model_validate(events[-1][1]["error"]).type == "server_error"
        for _, data in events[:-1]:
            ChatCompletionChunk.model_validate(data)
    else:
        events = _events(sim, f"/v1beta/models/{model}:streamGenerateContent?alt=sse",
                         {"x-goog-api-key": "k"},
                         {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]})
        assert events[-1][1]["error"] == {"code": 503, "message": "Overloaded (simulated).",
                                          "status": "UNAVAILABLE"}
        for _, data in events[:-1]:
            gtypes.GenerateContentResponse.model_validate(data)
    assert len(events) > 2


# ---------------------------------------------------------------- the SDK clients


def test_openai_sdk_tools_multi_turn_and_stream(oa) -> None:
    tools = [{"type": "function", "function": PRICE_TOOL}]
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "What is SPY at? Use get_price."}]
    first = oa.chat.completions.create(model="gpt-4-turbo", messages=msgs, tools=tools,
                                       tool_choice="auto", max_tokens=300)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_price"
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id,
              "content": json.dumps({"price": 512.5, "regime": "bull"})}]
    second = oa.chat.completions.create(model="gpt-4-turbo", messages=msgs, tools=tools,
                                        max_tokens=300)
    assert second.choices[0].finish_reason == "stop"
    assert json.loads(second.choices[0].message.content.strip("`").removeprefix("json"))
    stream = oa.chat.completions.create(model="gpt-4-turbo", messages=msgs[:1], tools=tools,
                                        stream=True, stream_options={"include_usage": True},
                                        max_tokens=300)
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens > 0
    assert any(ch.delta.tool_calls for c in chunks for ch in c.choices)


def test_openai_sdk_structured_output_parse(oa) -> None:
    done = oa.chat.completions.parse(model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
                                     messages=[{"role": "user", "content": PROMPT}],
                                     response_format=Signal, max_tokens=300)
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Signal) and parsed.direction in ("long", "short", "flat")
    obj = oa.chat.completions.create(model="open-mixtral-8x7b", max_tokens=300,
                                     messages=[{"role": "user", "content": PROMPT}],
                                     response_format={"type": "json_object"})
    assert isinstance(json.loads(obj.choices[0].message.content), dict)  # never fenced


def test_openai_sdk_sampling_knobs(oa) -> None:
    def ask(**kw: Any) -> ChatCompletion:
        return oa.chat.completions.create(model="gpt-4-turbo", max_tokens=300,
                                          messages=[{"role": "user", "content": PROMPT}], **kw)

    a, b = ask(seed=42, n=3), ask(seed=42, n=3)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1  # n choices differ
    cut = ask(stop=['"confidence"'])
    assert cut.choices[0].finish_reason == "stop"
    assert '"confidence"' not in cut.choices[0].message.content
    lp = ask(logprobs=True, top_logprobs=3, presence_penalty=0.5, frequency_penalty=0.2)
    assert all(len(t.top_logprobs) == 3 for t in lp.choices[0].logprobs.content)


def test_anthropic_sdk_tools_multi_turn_and_stream(an) -> None:
    tools = [{"name": "get_price", "description": "Last price",
              "input_schema": PRICE_TOOL["parameters"]}]
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "SPY price? Use get_price."}]
    first = an.messages.create(model="claude-sonnet-4-5", max_tokens=300, tools=tools,
                               messages=msgs, tool_choice={"type": "any"})
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.input["symbol"] == "SPY"
    msgs += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                           "content": '{"price": 512.5}'}]}]
    second = an.messages.create(model="claude-sonnet-4-5", max_tokens=300, tools=tools,
                                messages=msgs)
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=300, tools=tools,
                            messages=msgs[:1]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].input["symbol"] == "SPY"
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=300,
                            messages=[{"role": "user", "content": PROMPT}],
                            stop_sequences=['"confidence"']) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == '"confidence"'
    assert text == final.content[0].text and '"confidence"' not in text


def test_anthropic_sdk_thinking_and_prompt_cache(an) -> None:
    thought = an.messages.create(model="claude-sonnet-4-5", max_tokens=2000,
                                 thinking={"type": "enabled", "budget_tokens": 1024},
                                 messages=[{"role": "user", "content": PROMPT}])
    assert [b.type for b in thought.content] == ["thinking", "text"]
    assert thought.usage.output_tokens_details.thinking_tokens == 300
    system = [{"type": "text", "text": f"Rules {uuid.uuid4()}. " * 300,
               "cache_control": {"type": "ephemeral"}}]  # > 1024 tokens, new to the cache
    model = "claude-sonnet-4-5"
    first = an.messages.create(model=model, max_tokens=100, system=system,
                               messages=[{"role": "user", "content": PROMPT}])
    again = an.messages.create(model=model, max_tokens=100, system=system,
                               messages=[{"role": "user", "content": PROMPT}])
    assert first.usage.cache_creation_input_tokens > 0 == first.usage.cache_read_input_tokens
    assert again.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert again.usage.input_tokens == first.usage.input_tokens  # the uncached rest
    unmarked = an.messages.create(model=model, max_tokens=100, system=system[0]["text"],
                                  messages=[{"role": "user", "content": PROMPT}])
    assert unmarked.usage.cache_read_input_tokens == 0  # Claude caches only what is marked
    with pytest.raises(anthropic.BadRequestError):  # a budget must stay below max_tokens
        an.messages.create(model="claude-sonnet-4-5", max_tokens=1024,
                           thinking={"type": "enabled", "budget_tokens": 1024},
                           messages=[{"role": "user", "content": PROMPT}])


def get_price(symbol: str) -> dict:
    """Last price of a symbol."""
    return {"symbol": symbol, "price": 512.5, "regime": "bull"}


def test_genai_sdk_function_calling_round_trip(gc) -> None:
    manual = gc.models.generate_content(
        model="gemini-2.5-pro", contents="What is SPY at? Use get_price.",
        config=gtypes.GenerateContentConfig(
            tools=[get_price],
            automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True)))
    assert manual.function_calls[0].name == "get_price"
    # automatic function calling: the SDK runs the function and sends its result back
    auto = gc.models.generate_content(
        model="gemini-2.5-pro", contents="What is SPY at? Use get_price.",
        config=gtypes.GenerateContentConfig(tools=[get_price]))
    assert "direction" in auto.text
    history = auto.automatic_function_calling_history
    assert any(p.function_response for c in history for p in c.parts or ())


def test_genai_sdk_schema_stream_and_thinking(gc) -> None:
    parsed = gc.models.generate_content(
        model="gemini-2.5-pro", contents=PROMPT,
        config=gtypes.GenerateContentConfig(response_mime_type="application/json",
                                            response_schema=Signal))
    assert isinstance(parsed.parsed, Signal)
    chunks = list(gc.models.generate_content_stream(
        model="gemini-2.5-pro", contents=PROMPT,
        config=gtypes.GenerateContentConfig(max_output_tokens=800,
                                            thinking_config=gtypes.ThinkingConfig(
                                                thinking_budget=128))))
    assert len(chunks) > 3 and "direction" in "".join(c.text or "" for c in chunks)
    assert chunks[-1].usage_metadata.thoughts_token_count == 128
    empty = gc.models.generate_content(model="gemini-2.5-pro", contents=PROMPT,
                                       config=gtypes.GenerateContentConfig(max_output_tokens=300))
    assert empty.candidates[0].finish_reason == gtypes.FinishReason.MAX_TOKENS
    assert empty.text is None and empty.usage_metadata.thoughts_token_count == 300
    for refused in ({"presence_penalty": 0.5}, {"response_logprobs": True, "logprobs": 2},
                    {"thinking_config": gtypes.ThinkingConfig(thinking_budget=0)}):
        with pytest.raises(genai.errors.ClientError) as exc:
            gc.models.generate_content(model="gemini-2.5-pro", contents=PROMPT,
                                       config=gtypes.GenerateContentConfig(**refused))
        assert exc.value.code == 400


def test_stream_faults_reach_the_sdks(sim, oa, an) -> None:
    model = _fresh("err")
    sim.set_profile(model, stream_error=1.0)
    with pytest.raises(anthropic.APIStatusError) as exc:
        with an.messages.stream(model=model, max_tokens=300,
                                messages=[{"role": "user", "content": PROMPT}]) as stream:
            list(stream.text_stream)
    assert "overloaded" in str(exc.value).lower()
    with pytest.raises(openai.APIError):
        list(oa.chat.completions.create(model=model, stream=True, max_tokens=300,
                                        messages=[{"role": "user", "content": PROMPT}]))
    sim.set_profile(model, stream_error=0.0, rate_limit=1.0, retry_after_s=0)
    with pytest.raises(openai.RateLimitError):  # before the stream: a plain 429
        oa.chat.completions.create(model=model, stream=True, max_tokens=300,
                                   messages=[{"role": "user", "content": PROMPT}])
