"""The capability table: which parameters each provider honours, the pure `unsupported` check
the router uses to exclude a provider (or answer 400), per-provider overrides, the thinking
budget actually sent, and the bad-input corpus of the provider-neutral request."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from actors.clients import Completion
from actors.clients.capabilities import (
    ANTHROPIC_JSON_TOOL,
    DEFAULTS,
    capabilities,
    dialect,
    thinking_budget,
    unsupported,
)
from actors.config import Capabilities, ConfigError, ProviderSpec, load_config, parse_config

TOOL = {"type": "function", "function": {"name": "get_price", "parameters": {
    "type": "object", "properties": {"symbol": {"type": "string"}}}}}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def ask(**kw: Any) -> Completion:
    return Completion(messages=[{"role": "user", "content": "SPY?"}], **kw)


def params(spec: ProviderSpec, c: Completion) -> set[str]:
    return {u.param for u in unsupported(spec, c)}


def test_every_provider_takes_a_plain_request(cfg) -> None:
    for spec in cfg.providers:
        assert unsupported(spec, ask(max_tokens=100, temperature=0.2)) == []


def test_shipped_providers_dialects(cfg) -> None:
    assert {s.name: dialect(s) for s in cfg.providers} == {
        "claude": "anthropic", "gemini": "gemini", "gpt-4-turbo": "openai",
        "mixtral": "mistral", "llama": "together"}
    assert set(DEFAULTS) == {"anthropic", "gemini", "openai", "mistral", "together", "groq"}
    for caps in DEFAULTS.values():  # every default is complete: no key left to chance
        unset = [k for k, v in caps.model_dump().items() if v is None]
        assert set(unset) <= {"max_stop", "max_thinking_budget", "min_thinking_budget"}


@pytest.mark.parametrize(("kw", "who"), [
    ({"seed": 1}, {"claude"}),
    ({"presence_penalty": 0.5}, {"claude", "gemini"}),
    ({"frequency_penalty": -0.3}, {"claude", "gemini"}),
    ({"logprobs": True}, {"claude", "gemini", "mixtral"}),
    ({"logprobs": True, "top_logprobs": 5}, {"claude", "gemini", "mixtral"}),
    ({"n": 3}, {"claude"}),
    ({"n": 9}, {"claude", "gemini", "mixtral", "llama"}),
    ({"stop": ["a", "b", "c", "d", "e"]}, {"gpt-4-turbo"}),
    ({"stop": ["a"] * 6}, {"gpt-4-turbo", "gemini"}),
    ({"top_p": 0.9, "temperature": 0.5}, {"claude"}),
    ({"tools": [TOOL], "parallel_tool_calls": False}, {"gemini", "llama"}),
    ({"response_format": SCHEMA_FORMAT}, {"gpt-4-turbo"}),
    ({"response_format": {"type": "json_object"}}, set()),
    ({"tools": [TOOL], "response_format": {"type": "json_object"}}, {"gemini", "llama"}),
    ({"thinking_budget": 2000}, {"gpt-4-turbo", "mixtral", "llama"}),
    ({"thinking_budget": 64}, {"claude", "gemini", "gpt-4-turbo", "mixtral", "llama"}),
    ({"thinking_budget": 0}, {"gemini"}),  # 2.5 Pro cannot stop thinking
    ({"thinking_budget": -1}, {"claude", "gpt-4-turbo", "mixtral", "llama"}),
    ({"user": "desk-7"}, set()),  # recorded by the router; sent where the API takes it
])
def test_who_cannot_honour_what(cfg, kw: dict, who: set[str]) -> None:
    c = ask(**kw)
    assert {s.name for s in cfg.providers if unsupported(s, c)} == who
    for s in cfg.providers:
        for u in unsupported(s, c):
            assert u.param in kw and s.name in u.reason  # names the parameter and the provider


def test_claude_thinking_rules(cfg) -> None:
    claude = cfg.provider("claude")
    assert params(claude, ask(thinking_budget=2000, max_tokens=2000)) == {"thinking_budget"}
    assert params(claude, ask(thinking_budget=2000, max_tokens=4000, tools=[TOOL],
                              tool_choice="required")) == {"tool_choice"}
    assert params(claude, ask(thinking_budget=2000, max_tokens=4000,
                              response_format={"type": "json_object"})) == {"response_format"}
    assert params(claude, ask(thinking_budget=2000, max_tokens=4000,
                              temperature=0.3)) == {"temperature"}
    # a budget from the provider's config counts too
    thinking = claude.model_copy(update={"thinking_budget": 4000})
    assert params(thinking, ask(max_tokens=8000, tools=[TOOL], tool_choice="required")) == {
        "tool_choice"}


def test_history_with_tool_calls_needs_json_object_arguments(cfg) -> None:
    c = Completion(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "f", "arguments": "oops"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}])
    assert {s.name for s in cfg.providers if unsupported(s, c)} == {"claude", "gemini"}


def test_reserved_json_tool_name_on_claude(cfg) -> None:
    clash = {"type": "function", "function": {"name": ANTHROPIC_JSON_TOOL}}
    c = ask(tools=[clash], response_format={"type": "json_object"})
    assert params(cfg.provider("claude"), c) == {"tools"}


def test_config_overrides_a_capability_and_names_bad_keys(cfg) -> None:
    gemini2 = cfg.provider("gemini").model_copy(update={
        "model": "gemini-2.0-flash", "capabilities": Capabilities(penalties=True, logprobs=True,
                                                                   min_thinking_budget=0)})
    assert unsupported(gemini2, ask(presence_penalty=0.3, logprobs=True, thinking_budget=0)) == []
    assert capabilities(gemini2).max_stop == 5  # the rest stays the format's default
    data = {"providers": [{**cfg.provider("gpt-4-turbo").model_dump(),
                           "capabilities": {"seeds": True}}]}
    with pytest.raises(ConfigError, match=r"providers\[0\] \(gpt-4-turbo\)\.capabilities\.seeds"):
        parse_config(data)
    data["providers"][0]["capabilities"] = {}
    data["providers"][0]["api"] = "gemini"
    data["providers"][0]["dialect"] = "mistral"
    with pytest.raises(ConfigError, match="dialect: only applies to api: openai"):
        parse_config(data)


def test_thinking_budget_sent(cfg) -> None:
    gemini = cfg.provider("gemini")  # configured 1024
    assert thinking_budget(gemini, ask(), 512) == 256  # half of max_tokens
    assert thinking_budget(gemini, ask(), 200) == 128  # not below the model's floor
    assert thinking_budget(gemini, ask(), 65536) == 1024
    assert thinking_budget(gemini, ask(thinking_budget=-1), 512) == -1  # the request wins
    assert thinking_budget(cfg.provider("gpt-4-turbo"), ask(), 512) is None


# ---------------------------------------------------------------- the bad-input corpus


@pytest.mark.parametrize(("kw", "where", "words"), [
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]},
     "tools.0.function.name", "pattern"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools.0.function.parameters", "type 'object'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "bogus"}}}}}]},
     "tools.0.function.parameters", "not a valid JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "extra": 1}}]},
     "tools.0.function.extra", "Extra inputs"),
    ({"tools": [TOOL, TOOL]}, "tools", "same name"),
    ({"tools": []}, "tools", "at least 1"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice", ""),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "not in tools"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls", "needs tools"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "required"),
    ({"response_format": {"type": "xml"}}, "response_format.type", ""),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "$ref": "https://evil.example/schema.json"}}}}, "response_format.json_schema.schema",
     "only local references"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "$ref": "#/$defs/missing"}}}}, "response_format.json_schema.schema", "points at nothing"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema.name", "required"),
    ({"top_logprobs": 3}, "top_logprobs", "needs logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20"),
    ({"stop": [""]}, "stop", "empty"),
    ({"stop": ["x"] * 17}, "stop", "at most 16"),
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
    ({"presence_penalty": 3}, "presence_penalty", "less than or equal to 2"),
    ({"thinking_budget": -2}, "thinking_budget", "greater than or equal to -1"),
    ({"messages": [{"role": "tool", "content": "r", "tool_call_id": "c9"}]}, "messages",
     "answers no earlier assistant tool call"),
    ({"messages": [{"role": "tool", "content": "r"}]}, "messages.0", "tool_call_id"),
    ({"messages": [{"role": "user", "content": None}]}, "messages.0", "content"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages.0",
     "only assistant messages"),
])  # fmt: skip
def test_bad_input_names_the_parameter(kw: dict, where: str, words: str) -> None:
    fields = {"messages": [{"role": "user", "content": "hi"}]} | kw
    with pytest.raises(ValidationError) as exc:
        Completion(**fields)
    err = exc.value.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    assert loc.startswith(where), (loc, err["msg"])
    assert words in err["msg"]
