"""Wire mapping both ways, pure: the provider-neutral request (OpenAI's shape) built into each
format and checked with the SDKs' own request types where they validate (Gemini's pydantic
models, Anthropic's block and tool-choice types), and captured answers parsed back: tool
calls in OpenAI's shape, JSON answers, n choices, logprobs, usage split as billed."""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as at
import pytest
from google.genai import types as gtypes
from openai.types.chat import ChatCompletion
from pydantic import TypeAdapter

from actors.clients import CLIENTS, Completion
from actors.clients.anthropic import AnthropicClient
from actors.clients.capabilities import ANTHROPIC_JSON_TOOL
from actors.clients.gemini import GeminiClient
from actors.clients.openai import OpenAIClient
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError

KEY = "sk-test"
TOOL = {"type": "function", "function": {
    "name": "get_price", "description": "Last price",
    "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}},
                   "required": ["symbol"]}}}
NEWS = {"type": "function", "function": {"name": "get_news"}}
SCHEMA = {"type": "object", "properties": {"direction": {"enum": ["long", "short"]},
                                           "confidence": {"type": "number"}},
          "required": ["direction", "confidence"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "signal", "schema": SCHEMA}}
#: A conversation with two parallel tool calls answered, then a follow-up question.
TURNS: list[dict[str, Any]] = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "SPY and news?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_price", "arguments": '{"symbol": "SPY"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_news", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"price": 512.5}'},
    {"role": "tool", "tool_call_id": "call_2", "content": "Fed on hold."},
    {"role": "user", "content": "So?"},
]


def spec(api: str, **over: Any) -> ProviderSpec:
    base = {"anthropic": "https://api.anthropic.com", "gemini":
            "https://generativelanguage.googleapis.com/v1beta"}.get(api, "https://api.openai.com/v1")
    model = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-pro"}.get(api, "gpt-4o")
    fields: dict[str, Any] = dict(
        name=f"p-{api}", api=api, model=model, base_url=base, api_key_env="NO_SUCH_KEY",
        input_cost_per_mtok=3.0, output_cost_per_mtok=15.0, cached_input_cost_per_mtok=0.3,
        cache_write_cost_per_mtok=3.75, max_input_tokens=100_000, max_output_tokens=8000, rpm=10,
        tpm=10_000)
    return ProviderSpec(**(fields | over))


def ask(messages: list[dict[str, Any]] | None = None, **kw: Any) -> Completion:
    return Completion(messages=messages or [{"role": "user", "content": "SPY?"}], **kw)


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# ---------------------------------------------------------------- OpenAI and its hosts


def test_openai_build_passes_every_parameter_through() -> None:
    c = ask(TURNS, stop="END", top_p=0.9, seed=7, presence_penalty=0.5, frequency_penalty=-0.5,
            user="desk-7", logprobs=True, top_logprobs=3, n=2, tools=[TOOL, NEWS],
            tool_choice={"type": "function", "function": {"name": "get_price"}},
            parallel_tool_calls=False, response_format=JSON_SCHEMA)
    _, _, body = OpenAIClient.build(spec("openai"), c, KEY, stream=True)
    assert body["messages"][2]["tool_calls"][1]["function"]["name"] == "get_news"
    assert body["messages"][2]["content"] is None
    assert body["messages"][3] == {"role": "tool", "content": '{"price": 512.5}',
                                   "tool_call_id": "call_1"}
    assert (body["stop"], body["top_p"], body["seed"], body["user"]) == (["END"], 0.9, 7, "desk-7")
    assert (body["logprobs"], body["top_logprobs"], body["n"]) == (True, 3, 2)
    assert body["tools"][1] == {"type": "function", "function": {"name": "get_news"}}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_price"}}
    assert body["parallel_tool_calls"] is False
    assert body["response_format"] == JSON_SCHEMA
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("base_url", "seed_key", "logprobs", "choice", "user", "options"), [
    ("https://api.mistral.ai/v1", "random_seed", None, "any", None, None),
    ("https://api.together.xyz/v1", "seed", 3, "required", None, None),
    ("https://api.groq.com/openai/v1", "seed", None, "required", None, None),
    ("https://llm.internal/v1", "seed", True, "required", "desk-7", {"include_usage": True}),
])
def test_openai_hosts_name_parameters_their_way(base_url, seed_key, logprobs, choice, user,
                                                options) -> None:
    c = ask(seed=1, tools=[TOOL], tool_choice="required", user="desk-7",
            **({"logprobs": True, "top_logprobs": 3} if logprobs is not None else {}))
    _, _, body = OpenAIClient.build(spec("openai", base_url=base_url), c, KEY, stream=True)
    assert body[seed_key] == 1 and body["tool_choice"] == choice
    assert body.get("logprobs") == logprobs and body.get("user") == user
    assert body.get("stream_options") == options


OPENAI_TOOLS_N2 = {
    "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    "choices": [
        {"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "get_price", "arguments": "{\"symbol\":\"SPY\"}"}}]}},
        {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "Long."},
         "logprobs": {"content": [{"token": "Long", "logprob": -0.1, "bytes": [76],
                                   "top_logprobs": [{"token": "Short", "logprob": -2.5,
                                                     "bytes": [83]}]}], "refusal": None}}],
    "usage": {"prompt_tokens": 2000, "completion_tokens": 50, "total_tokens": 2050,
              "prompt_tokens_details": {"cached_tokens": 1536},
              "completion_tokens_details": {"reasoning_tokens": 20}},
}  # fmt: skip


def test_openai_parse_tool_calls_choices_logprobs_and_cached_usage() -> None:
    ChatCompletion.model_validate(OPENAI_TOOLS_N2)
    r = OpenAIClient.parse(spec("openai"), 200, {}, js(OPENAI_TOOLS_N2), 0.2)
    assert r.finish_reason == "tool_calls" and r.text == ""
    assert r.tool_calls[0].id == "call_a" and r.tool_calls[0].args() == {"symbol": "SPY"}
    assert [c.finish_reason for c in r.choices] == ["tool_calls", "stop"]
    assert r.choices[1].logprobs[0].top_logprobs[0].token == "Short"
    assert (r.input_tokens, r.cached_input_tokens, r.reasoning_tokens) == (2000, 1536, 20)
    assert r.cost_usd == pytest.approx((464 * 3.0 + 1536 * 0.3 + 50 * 15.0) / 1e6)


def test_together_logprobs_shape_is_normalized() -> None:
    body = {"id": "t", "object": "chat.completion", "created": 1, "model": "llama",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "Up"},
                "logprobs": {"tokens": ["U", "p"], "token_logprobs": [-0.5, -0.25]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    r = OpenAIClient.parse(spec("openai"), 200, {}, js(body), 0.1)
    assert [(t.token, t.logprob) for t in r.logprobs] == [("U", -0.5), ("p", -0.25)]


# ---------------------------------------------------------------- Anthropic

BLOCK = TypeAdapter(at.ContentBlockParam)
TOOL_CHOICE = TypeAdapter(at.ToolChoiceParam)
TOOL_PARAM = TypeAdapter(at.ToolParam)


def _valid_anthropic(body: dict[str, Any]) -> None:
    for m in body["messages"]:
        for block in m["content"] if isinstance(m["content"], list) else ():
            BLOCK.validate_python(block)
    for tool in body.get("tools", ()):
        TOOL_PARAM.validate_python(tool)
    if "tool_choice" in body:
        TOOL_CHOICE.validate_python(body["tool_choice"])


def test_anthropic_build_multi_turn_tools() -> None:
    c = ask(TURNS, tools=[TOOL, NEWS], stop=["END"], top_p=0.8, user="desk-7",
            parallel_tool_calls=False)
    _, _, body = AnthropicClient.build(spec("anthropic"), c, KEY)
    _valid_anthropic(body)
    assert body["system"] == "Be terse."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][0] == {
        "type": "tool_use", "id": "call_1", "name": "get_price", "input": {"symbol": "SPY"}}
    results = body["messages"][2]["content"]  # both results, then the question, one turn
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    assert results[1] == {"type": "tool_result", "tool_use_id": "call_2", "content": "Fed on hold."}
    assert body["tools"][1] == {"name": "get_news", "input_schema": {"type": "object",
                                                                     "properties": {}}}
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert (body["stop_sequences"], body["top_p"]) == (["END"], 0.8)
    assert body["metadata"] == {"user_id": "desk-7"}


@pytest.mark.parametrize(("kw", "choice", "names"), [
    ({"tool_choice": "required"}, {"type": "any"}, ["get_price"]),
    ({"tool_choice": "none"}, {"type": "none"}, ["get_price"]),
    ({"tool_choice": {"type": "function", "function": {"name": "get_price"}}},
     {"type": "tool", "name": "get_price"}, ["get_price"]),
    ({"response_format": JSON_SCHEMA}, {"type": "any"}, ["get_price", ANTHROPIC_JSON_TOOL]),
    ({"response_format": JSON_SCHEMA, "tool_choice": "none"},
     {"type": "tool", "name": ANTHROPIC_JSON_TOOL}, ["get_price", ANTHROPIC_JSON_TOOL]),
    ({"response_format": JSON_SCHEMA, "tool_choice": "required"}, {"type": "any"},
     ["get_price"]),
])
def test_anthropic_tool_choice_and_json_tool(kw: dict, choice: dict, names: list[str]) -> None:
    _, _, body = AnthropicClient.build(spec("anthropic"), ask(tools=[TOOL], **kw), KEY)
    _valid_anthropic(body)
    assert body["tool_choice"] == choice and [t["name"] for t in body["tools"]] == names
    if ANTHROPIC_JSON_TOOL in names:
        assert body["tools"][-1]["input_schema"] == SCHEMA


@pytest.mark.parametrize("cls", [OpenAIClient, AnthropicClient, GeminiClient])
def test_tool_choice_none_without_tools_is_not_sent(cls) -> None:
    _, _, body = cls.build(spec(cls.api), ask(tool_choice="none"), KEY)
    assert not {"tool_choice", "tools", "toolConfig"} & set(body)


def test_anthropic_json_object_without_tools_forces_the_json_tool() -> None:
    _, _, body = AnthropicClient.build(spec("anthropic"),
                                       ask(response_format={"type": "json_object"}), KEY)
    assert body["tools"] == [{"name": ANTHROPIC_JSON_TOOL, "description": body["tools"][0][
        "description"], "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "tool", "name": ANTHROPIC_JSON_TOOL}


def test_anthropic_thinking_budget_from_config_and_request() -> None:
    s = spec("anthropic", thinking_budget=4000)
    _, _, body = AnthropicClient.build(s, ask(max_tokens=6000), KEY)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 3000}  # half of max_tokens
    _, _, body = AnthropicClient.build(s, ask(max_tokens=1500), KEY)
    assert body["thinking"]["budget_tokens"] == 1024  # Claude's floor, still below max_tokens
    _, _, body = AnthropicClient.build(s, ask(max_tokens=1024), KEY)
    assert "thinking" not in body  # the floor does not fit below max_tokens: off
    _, _, body = AnthropicClient.build(s, ask(max_tokens=6000, thinking_budget=5000), KEY)
    assert body["thinking"]["budget_tokens"] == 5000  # a request's budget is sent as given


ANTHROPIC_TOOL_USE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_price",
                 "input": {"symbol": "SPY"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000,
              "cache_creation_input_tokens": 200, "output_tokens": 80,
              "output_tokens_details": {"thinking_tokens": 30}},
}  # fmt: skip


def test_anthropic_parse_tool_use_and_billed_usage() -> None:
    at.Message.model_validate(ANTHROPIC_TOOL_USE)
    r = AnthropicClient.parse(spec("anthropic"), 200, {}, js(ANTHROPIC_TOOL_USE), 0.3)
    assert (r.text, r.finish_reason) == ("Checking.", "tool_calls")
    assert r.tool_calls[0].model_dump() == {"id": "toolu_1", "type": "function", "function": {
        "name": "get_price", "arguments": '{"symbol": "SPY"}'}}
    assert (r.input_tokens, r.cached_input_tokens, r.cache_write_tokens) == (1300, 1000, 200)
    assert (r.output_tokens, r.reasoning_tokens) == (80, 30)
    assert r.cost_usd == pytest.approx((100 * 3.0 + 1000 * 0.3 + 200 * 3.75 + 80 * 15) / 1e6)


def test_anthropic_json_tool_answer_is_the_text() -> None:
    body = {**ANTHROPIC_TOOL_USE, "content": [{"type": "tool_use", "id": "toolu_2",
                                               "name": ANTHROPIC_JSON_TOOL,
                                               "input": {"direction": "long", "confidence": 0.7}}]}
    r = AnthropicClient.parse(spec("anthropic"), 200, {}, js(body), 0.3)
    assert json.loads(r.text) == {"direction": "long", "confidence": 0.7}
    assert (r.finish_reason, r.tool_calls) == ("stop", None)


# ---------------------------------------------------------------- Gemini


def test_gemini_build_multi_turn_tools_validates_with_genai_types() -> None:
    c = ask(TURNS, tools=[TOOL, NEWS], tool_choice="required", stop=["END"], top_p=0.9, seed=3,
            n=2, max_tokens=2000)
    url, _, body = GeminiClient.build(spec("gemini", thinking_budget=4096), c, KEY, stream=True)
    assert url.endswith("/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    for content in body["contents"]:
        gtypes.Content.model_validate(content)
    config = gtypes.GenerationConfig.model_validate(body["generationConfig"])
    gtypes.Tool.model_validate(body["tools"][0])
    gtypes.ToolConfig.model_validate(body["toolConfig"])
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"][0] == {"functionCall": {"name": "get_price",
                                                                "args": {"symbol": "SPY"}}}
    responses = body["contents"][2]["parts"]  # answered by name, then the question
    assert responses[0] == {"functionResponse": {"name": "get_price",
                                                 "response": {"price": 512.5}}}
    assert responses[1]["functionResponse"] == {"name": "get_news",
                                                "response": {"result": "Fed on hold."}}
    assert responses[2] == {"text": "So?"}
    decl = body["tools"][0]["functionDeclarations"]
    assert decl[0]["parametersJsonSchema"] == TOOL["function"]["parameters"]
    assert "parametersJsonSchema" not in decl[1]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert (config.stop_sequences, config.top_p, config.seed, config.candidate_count) == (
        ["END"], 0.9, 3, 2)
    assert config.thinking_config.thinking_budget == 1000  # configured 4096, capped at half


def test_gemini_build_json_schema_named_tool_and_logprobs() -> None:
    gemini2 = spec("gemini", model="gemini-2.0-flash", capabilities={"logprobs": True})
    _, _, body = GeminiClient.build(gemini2, ask(response_format=JSON_SCHEMA, logprobs=True,
                                                 top_logprobs=4), KEY)
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 4)
    gtypes.GenerationConfig.model_validate(config)
    named = ask(tools=[TOOL, NEWS], tool_choice={"type": "function",
                                                 "function": {"name": "get_news"}})
    _, _, body = GeminiClient.build(spec("gemini"), named, KEY)
    assert body["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY", "allowedFunctionNames": ["get_news"]}


GEMINI_CALLS = {
    "candidates": [
        {"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_price", "args": {"symbol": "SPY"}}},
            {"functionCall": {"name": "get_news", "args": {}}}]},
         "finishReason": "STOP", "index": 0},
        {"content": {"role": "model", "parts": [{"text": "Long."}]}, "finishReason": "STOP",
         "index": 1, "logprobsResult": {
             "chosenCandidates": [{"token": "Long", "logProbability": -0.2}],
             "topCandidates": [{"candidates": [{"token": "Long", "logProbability": -0.2},
                                               {"token": "Short", "logProbability": -1.9}]}]}}],
    "usageMetadata": {"promptTokenCount": 3000, "candidatesTokenCount": 40,
                      "thoughtsTokenCount": 60, "cachedContentTokenCount": 2048,
                      "totalTokenCount": 3100},
    "modelVersion": "gemini-2.5-pro", "responseId": "r9",
}  # fmt: skip


def test_gemini_parse_calls_get_ids_and_usage_is_split() -> None:
    gtypes.GenerateContentResponse.model_validate(GEMINI_CALLS)
    r = GeminiClient.parse(spec("gemini"), 200, {}, js(GEMINI_CALLS), 0.4)
    assert r.finish_reason == "tool_calls"
    assert [(t.id, t.function.name) for t in r.tool_calls] == [
        ("call_r9_0_0", "get_price"), ("call_r9_0_1", "get_news")]
    assert r.choices[1].text == "Long." and r.choices[1].logprobs[0].top_logprobs[1].token == "Short"
    assert (r.input_tokens, r.cached_input_tokens) == (3000, 2048)
    assert (r.output_tokens, r.reasoning_tokens) == (100, 60)
    assert r.cost_usd == pytest.approx((952 * 3.0 + 2048 * 0.3 + 100 * 15.0) / 1e6)
    # the ids survive the round trip: the next turn answers the calls by name
    c = ask([{"role": "user", "content": "SPY?"},
             {"role": "assistant", "tool_calls": [t.model_dump() for t in r.tool_calls]},
             {"role": "tool", "tool_call_id": "call_r9_0_1", "content": "{}"}])
    _, _, body = GeminiClient.build(spec("gemini"), c, KEY)
    assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_news"


# ---------------------------------------------------------------- what cannot be mapped


@pytest.mark.parametrize(("api", "kw", "param"), [
    ("anthropic", {"seed": 1}, "seed"), ("anthropic", {"n": 2}, "n"),
    ("gemini", {"presence_penalty": 0.4}, "presence_penalty"),
    ("openai", {"thinking_budget": 2048}, "thinking_budget")])
def test_a_parameter_a_provider_cannot_honour_is_refused_not_dropped(api, kw, param) -> None:
    """The router excludes such providers first; the wire client is the last guard."""
    with pytest.raises(ProviderError) as exc:
        CLIENTS[api].build(spec(api), ask(**kw), KEY)
    assert exc.value.error_class is ErrorClass.BAD_REQUEST
    assert exc.value.message.startswith(f"{param}: p-{api}")


@pytest.mark.parametrize("cls", [AnthropicClient, GeminiClient])
def test_tool_arguments_that_are_not_an_object_are_refused_before_sending(cls) -> None:
    c = ask([{"role": "user", "content": "x"},
             {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                 "name": "f", "arguments": "[1, 2]"}}]},
             {"role": "tool", "tool_call_id": "c", "content": "ok"}])
    with pytest.raises(ProviderError) as exc:
        cls.build(spec(cls.api), c, KEY)
    assert exc.value.error_class is ErrorClass.BAD_REQUEST and "not a JSON object" in str(exc.value)
