"""Issue 13's API surface end to end: completion parameters, tools and structured outputs
through the Python API and the OpenAI-compatible endpoint, driven by the official `openai`
SDK and LangChain's ChatOpenAI, against the loopback simulator speaking each vendor's format."""

from __future__ import annotations

import json
import os
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from actors.api import RouterClient, connect
from actors.config import parse_config
from actors.core.errors import ErrorClass
from actors.routing.route import RoutingError
from tests.conftest import make_config, sim, sim_count, sim_reset
from tests.test_serve import free_port

TOKEN = "api13-client-token-5e1f0c"
AUTH = {"authorization": f"Bearer {TOKEN}"}
QUOTE_TOOL = {"type": "function", "function": {
    "name": "get_quote", "description": "Last price of a symbol.",
    "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}},
                   "required": ["symbol"]}}}
#: Providers whose wire format answers JSON schemas (gpt-4-turbo is configured without).
SCHEMA_PROVIDERS = ["claude", "gemini", "mixtral", "llama"]


class Signal(BaseModel):
    """A trade call (defined here, in the caller: the actors never import it)."""

    direction: Literal["long", "short", "flat"]
    confidence: float = Field(ge=0, le=1)
    rationale: str


@pytest.fixture(scope="module")
def stack(ray_cluster, tmp_path_factory):
    from ray import serve

    from serve.run import deploy, load_serve_config

    data = make_config(tmp_path_factory.mktemp("api13"))
    cfg = parse_config(data)
    os.environ["LLM_ROUTER_API_TOKEN"] = TOKEN
    try:
        llm = connect(config=cfg)
        schema = load_serve_config()
        schema.applications[0].deployments[0].ray_actor_options.num_cpus = 0
        url = deploy(cfg, schema, port=free_port())
    finally:
        os.environ.pop("LLM_ROUTER_API_TOKEN", None)
    yield url, llm
    serve.shutdown()
    llm.shutdown(stop_ray=False)


@pytest.fixture(scope="module")
def llm(stack) -> RouterClient:
    return stack[1]


@pytest.fixture(scope="module")
def oai(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack[0] + "/v1", api_key=TOKEN, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack[0], headers=AUTH, timeout=30) as c:
        yield c


# -- parameters: passed where honoured, excluded where not, 400 when nobody can ------------

def test_a_parameter_some_providers_cannot_honour_excludes_them_with_the_reason(llm):
    r = llm.complete("Is SPY bullish?", logprobs=True, top_logprobs=2, max_tokens=50)
    excluded = r.trace.excluded
    assert {"claude", "gemini", "mixtral"} <= set(excluded), excluded
    assert all("unsupported logprobs" in excluded[n] for n in ("claude", "gemini", "mixtral"))
    assert r.provider in ("gpt-4-turbo", "llama")
    assert r.logprobs and r.logprobs[0].token and len(r.logprobs[0].top_logprobs) <= 2


def test_a_pinned_provider_that_cannot_honour_a_parameter_is_a_bad_request(llm):
    with pytest.raises(RoutingError) as info:
        llm.complete("hi", provider="claude", seed=7)
    assert info.value.error_class is ErrorClass.BAD_REQUEST and info.value.param == "seed"
    assert "claude" in info.value.message and not info.value.trace.attempts


def test_seed_and_stop_reach_the_provider(llm):
    a = llm.complete("Is SPY bullish?", provider="llama", seed=11, temperature=1.0,
                     max_tokens=60)
    b = llm.complete("Is SPY bullish?", provider="llama", seed=11, temperature=1.0,
                     max_tokens=60)
    assert a.text == b.text  # seeded: the same answer
    word = a.text.split()[3]
    c = llm.complete("Is SPY bullish?", provider="llama", seed=11, temperature=1.0,
                     max_tokens=60, stop=[word])
    assert word not in c.text and a.text.startswith(c.text)


def test_user_on_the_audit_rows_and_costs_grouped_by_user(llm):
    r = llm.complete("hi", user="desk-rates", max_tokens=20)
    llm.complete("hi", user="desk-fx", max_tokens=20)
    rows = llm.audit(r.request_id)
    assert rows and all(row["user"] == "desk-rates" for row in rows)
    by_user = llm.costs("day", group_by="user").reset_index()
    spent = by_user.groupby("user")["cost_usd"].sum()
    assert spent["desk-rates"] > 0 and spent["desk-fx"] > 0
    assert list(by_user.columns[:3]) == ["period", "user", "simulated"]
    with pytest.raises(ValueError, match="group_by"):
        llm.costs("day", group_by="desk")


# -- structured outputs and tools in the Python API ----------------------------------------

@pytest.mark.parametrize("provider", SCHEMA_PROVIDERS)
def test_output_model_comes_back_validated_from_every_format(llm, provider):
    r = llm.complete("SPY 1d, RSI 61. Your call?", provider=provider, output=Signal,
                     max_tokens=300)
    assert isinstance(r.parsed, Signal) and r.parsed.direction in ("long", "short", "flat")
    assert r.cost_usd > 0 and r.trace.chosen == provider
    assert Signal.model_validate_json(r.text) == r.parsed


def test_an_answer_that_does_not_match_the_schema_is_invalid_and_falls_back(llm):
    sim(llm, "open-mixtral-8x7b", invalid_output=1.0)
    try:
        r = llm.complete("SPY?", fallbacks=["mixtral", "llama"], output=Signal, max_tokens=300)
    finally:
        sim_reset(llm, "open-mixtral-8x7b")
    assert r.provider == "llama" and isinstance(r.parsed, Signal)
    bad = [a for a in r.trace.attempts if a.provider == "mixtral"]
    assert bad and all(a.error_class == "invalid_response" for a in bad)
    rows = [row for row in llm.audit(r.request_id) if row.get("attempt")]
    assert any(row["provider"] == "mixtral" and row["cost_usd"] > 0 for row in rows)  # billed


def test_analyze_returns_the_trade_signal_model_with_cost_and_trace(llm):
    import numpy as np
    import pandas as pd

    from prompts.outputs import TradeSignal

    idx = pd.date_range("2023-01-01", periods=300, freq="D")
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 300))
    bars = pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close,
                         "volume": 1e6}, index=idx)
    r = llm.analyze(bars, symbol="SPY", timeframe="1d", max_tokens=400)
    assert isinstance(r.parsed, TradeSignal) and 0 <= r.parsed.confidence <= 1
    assert r.cost_usd > 0 and r.trace.chosen == r.provider


@pytest.mark.parametrize("provider", ["claude", "gemini", "gpt-4-turbo", "mixtral", "llama"])
def test_tool_calls_and_tool_results_across_formats(llm, provider):
    ask = [{"role": "user", "content": "What is SPY trading at?"}]
    r = llm.complete(ask, provider=provider, tools=[QUOTE_TOOL], tool_choice="required",
                     max_tokens=200)
    assert r.finish_reason == "tool_calls" and r.tool_calls
    call = r.tool_calls[0]
    assert call.function.name == "get_quote" and isinstance(call.args(), dict)
    turn = ask + [{"role": "assistant", "content": None,
                   "tool_calls": [c.model_dump() for c in r.tool_calls]}]
    turn += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps({"price": 512.3})}
             for c in r.tool_calls]
    done = llm.complete(turn, provider=provider, tools=[QUOTE_TOOL], max_tokens=200)
    assert done.text and not done.tool_calls and done.finish_reason == "stop"


def test_bad_parameters_fail_at_the_call_naming_them(llm):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="tool_choice"):
        llm.complete("hi", tool_choice="required")
    with pytest.raises(ValidationError, match="top_logprobs"):
        llm.complete("hi", top_logprobs=3)
    with pytest.raises(ValidationError, match="bogus"):
        llm.complete("hi", bogus=1)
    with pytest.raises(ValueError, match="not both"):
        llm.complete("hi", output=Signal, response_format={"type": "json_object"})


def test_n_choices_reserve_n_times_max_tokens_at_the_budget(llm):
    """A per-provider budget that fits one 2000-token answer but not three."""
    from actors.core.cost import worst_case_cost

    spec = llm.config.provider("gpt-4-turbo")
    one = worst_case_cost(spec, 200, 2000)
    llm.set_budgets({"per_provider": {"gpt-4-turbo": {"hourly_usd": one * 2}}})
    try:
        with pytest.raises(RoutingError) as info:
            llm.complete("hi", provider="gpt-4-turbo", n=3, max_tokens=2000)
        assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
        r = llm.complete("hi", provider="gpt-4-turbo", n=2, max_tokens=50)
        assert r.choices and len(r.choices) == 2
    finally:
        llm.reset_budgets()


# -- over HTTP: the official openai SDK ------------------------------------------------------

def test_sdk_tools_round_trip(oai):
    ask = [{"role": "user", "content": "What is SPY trading at?"}]
    r = oai.chat.completions.create(model="gemini", messages=ask, tools=[QUOTE_TOOL],
                                    tool_choice={"type": "function",
                                                 "function": {"name": "get_quote"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_quote" and "symbol" in json.loads(call.function.arguments)
    follow = ask + [choice.message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": '{"price": 512.3}'}]
    done = oai.chat.completions.create(model="gemini", messages=follow, tools=[QUOTE_TOOL])
    assert done.choices[0].message.content and done.choices[0].finish_reason == "stop"


def test_sdk_parse_with_a_pydantic_schema(oai):
    r = oai.beta.chat.completions.parse(
        model="claude", response_format=Signal,
        messages=[{"role": "user", "content": "SPY 1d, RSI 61. Your call?"}])
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Signal) and parsed.direction in ("long", "short", "flat")


def test_sdk_sampling_knobs_logprobs_and_n(oai):
    r = oai.chat.completions.create(
        model="gpt-4-turbo", n=2, logprobs=True, top_logprobs=2, seed=5, top_p=0.9,
        stop=["\n\n"], presence_penalty=0.1, frequency_penalty=0.1, user="desk-eq",
        max_tokens=40, messages=[{"role": "user", "content": "SPY?"}])
    assert len(r.choices) == 2 and [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].logprobs and r.choices[0].logprobs.content[0].top_logprobs
    assert r.usage.prompt_tokens_details.cached_tokens == 0


def test_sdk_unsupported_parameter_is_a_400_naming_it(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="claude", logprobs=True,
                                    messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "logprobs"
    assert "claude" in info.value.body["message"]


# -- over HTTP: LangChain's ChatOpenAI ------------------------------------------------------

@pytest.fixture(scope="module")
def chat(stack):
    from langchain_openai import ChatOpenAI

    def make(model: str) -> ChatOpenAI:
        return ChatOpenAI(model=model, base_url=stack[0] + "/v1", api_key=TOKEN,
                          max_retries=0, timeout=30)
    return make


def test_langchain_structured_output_default_mode(chat):
    out = chat("llama").with_structured_output(Signal).invoke("SPY 1d, RSI 61. Your call?")
    assert isinstance(out, Signal)


def test_langchain_bind_tools_and_stop(chat):
    msg = chat("mixtral").bind_tools([QUOTE_TOOL], tool_choice="get_quote").invoke(
        "What is SPY trading at?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_quote"
    assert "symbol" in msg.tool_calls[0]["args"]
    text = chat("llama").invoke("Is SPY bullish?", stop=["\n"]).content
    assert text and "\n" not in text


# -- over HTTP: malformed tools, schemas and stream options are 400s naming the parameter ---

MSG = [{"role": "user", "content": "hi"}]
BAD = [
    ("tool without function", {"tools": [{"type": "function"}]}, "tools[0].function"),
    ("tool bad name", {"tools": [{"type": "function", "function": {"name": "get quote"}}]},
     "tools[0].function.name"),
    ("tool params not object", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "string"}}}]}, "tools[0].function.parameters"),
    ("tool params not a schema", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": 5}}}]},
     "tools[0].function.parameters"),
    ("tool strict as string", {"tools": [{"type": "function", "function": {
        "name": "f", "strict": "yes"}}]}, "tools[0].function.strict"),
    ("two tools same name", {"tools": [QUOTE_TOOL, QUOTE_TOOL]}, "tools"),
    ("tool_choice without tools", {"tool_choice": "required"}, "tool_choice"),
    ("tool_choice unknown tool", {"tools": [QUOTE_TOOL], "tool_choice": {
        "type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ("tool_choice bad string", {"tools": [QUOTE_TOOL], "tool_choice": "sometimes"},
     "tool_choice"),
    ("parallel without tools", {"parallel_tool_calls": False}, "parallel_tool_calls"),
    ("response_format unknown type", {"response_format": {"type": "xml"}}, "response_format.type"),
    ("json_schema missing", {"response_format": {"type": "json_schema"}}, "response_format"),
    ("json_schema bad schema", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"type": "objekt"}}}}, "response_format.json_schema.schema"),
    ("json_schema remote ref", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "s", "schema": {"$ref": "https://example.com/s.json"}}}},
     "response_format.json_schema.schema"),
    ("stream_options without stream", {"stream_options": {"include_usage": True}},
     "stream_options"),
    ("stream_options unknown key", {"stream": True, "stream_options": {"chunks": 3}},
     "stream_options.chunks"),
    ("top_logprobs without logprobs", {"top_logprobs": 2}, "top_logprobs"),
    ("n too large", {"n": 99}, "n"),
    ("stop empty string", {"stop": [""]}, "stop"),
    ("tool message without id", {"messages": [
        {"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}, "messages[1]"),
    ("tool result answering nothing", {"messages": [
        {"role": "user", "content": "x"},
        {"role": "tool", "tool_call_id": "c1", "content": "y"}]}, "messages"),
]


@pytest.mark.parametrize("name,extra,param", BAD, ids=[b[0] for b in BAD])
def test_malformed_tools_schemas_and_stream_options_are_400s(http, name, extra, param):
    r = http.post("/v1/chat/completions", json={"model": "auto", "messages": MSG, **extra})
    assert r.status_code == 400, (name, r.text[:300])
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, (name, err)
    assert "Traceback" not in r.text


# -- true streaming -------------------------------------------------------------------------

SLOW = {"base_ms": 1000, "jitter": 0, "ms_per_token": 0, "stream_chunks": 12,
        "stream_interval_ms": 10000}  # ×0.02 latency_scale: 20 ms to the first, 200 ms apart


def test_sdk_stream_arrives_while_the_provider_is_still_generating(oai, llm):
    sim(llm, "meta-llama/Llama-3.3-70B-Instruct-Turbo", **SLOW)
    try:
        stream = oai.chat.completions.create(
            model="llama", stream=True, stream_options={"include_usage": True}, max_tokens=200,
            messages=[{"role": "user", "content": "Is QQQ overbought?"}])
        it = iter(stream)
        first = next(it)
        rid = first.id.removeprefix("chatcmpl-")
        # The first chunk is here while the router still routes the request: relayed as it
        # came, not after the whole answer.
        assert first.choices[0].delta.role == "assistant" and rid in llm.active([rid])
        rest = list(it)
    finally:
        sim_reset(llm, "meta-llama/Llama-3.3-70B-Instruct-Turbo")
    chunks = [first, *rest]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 6
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    rows = llm.audit(rid)
    attempt = [r for r in rows if r.get("attempt")][-1]
    assert attempt["ok"] and attempt["output_tokens"] == chunks[-1].usage.completion_tokens
    assert attempt["response"] == text and not attempt["usage_estimated"]


def test_sdk_stream_of_tool_calls(oai):
    stream = oai.chat.completions.create(
        model="claude", stream=True, tools=[QUOTE_TOOL], tool_choice="required",
        messages=[{"role": "user", "content": "What is SPY trading at?"}])
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        for d in chunk.choices[0].delta.tool_calls or ():
            c = calls.setdefault(d.index, {"name": "", "args": ""})
            c["name"] += d.function.name or ""
            c["args"] += d.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and calls[0]["name"] == "get_quote"
    assert "symbol" in json.loads(calls[0]["args"])


def test_a_client_that_disconnects_cancels_the_provider_and_the_bill_is_recorded(stack, llm):
    from tests.waiting import wait_until

    model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    sim(llm, model, **SLOW)
    before = sim_count(llm, model, "streams_cancelled")
    try:
        with httpx.Client(base_url=stack[0], headers=AUTH, timeout=30) as c:
            with c.stream("POST", "/v1/chat/completions", json={
                    "model": "llama", "stream": True, "max_tokens": 200,
                    "messages": [{"role": "user", "content": "Is QQQ overbought?"}]}) as r:
                assert r.status_code == 200
                rid = r.headers["x-router-request-id"]
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))
            # leaving the block closes the connection mid-stream
        wait_until(lambda: sim_count(llm, model, "streams_cancelled") > before, timeout=30)
    finally:
        sim_reset(llm, model)

    def recorded():
        llm.flush()
        rows = llm.audit(rid)
        return rows if any(row.get("error_class") == "cancelled" and row.get("attempt")
                           for row in rows) else None

    rows = wait_until(recorded, timeout=30)
    attempt = next(row for row in rows if row.get("attempt"))
    assert attempt["cost_usd"] > 0 and attempt["usage_estimated"]  # billed, estimated
    assert attempt["output_tokens"] > 0 and attempt["policy"] != "(router lost)"
    assert not llm.active([rid])


def test_python_stream_relays_events_and_falls_back_only_before_the_first_token(llm):
    import asyncio

    sim(llm, "open-mixtral-8x7b", down=True)

    async def run():
        async with llm.stream("Is SPY bullish?", fallbacks=["mixtral", "llama"],
                              max_tokens=100, user="desk-stream") as s:
            events = [ev async for ev in s]
        return s, events

    try:
        s, events = asyncio.run(run())
    finally:
        sim_reset(llm, "open-mixtral-8x7b")
    assert s.start.provider == "llama" and s.result.provider == "llama"
    assert [a.provider for a in s.result.trace.attempts if not a.ok] == ["mixtral"] * len(
        [a for a in s.result.trace.attempts if not a.ok])
    assert s.text == s.result.text and events[-1].type == "finish"
    assert s.result.cost_usd > 0 and s.result.output_tokens > 0


def test_python_stream_output_model(llm):
    import asyncio

    async def run():
        s = llm.stream("SPY 1d, RSI 61. Your call?", provider="gemini", output=Signal,
                       max_tokens=300)
        async for _ in s:
            pass
        return s

    s = asyncio.run(run())
    assert isinstance(s.result.parsed, Signal)


def test_streams_over_ray_calls_on_both_hops(llm):
    """The cross-node path (Ray streaming-generator calls): caller → router, and router's
    own kind of call → a provider actor."""
    import asyncio

    from actors.clients.base import Completion
    from actors.routing.route import RouteRequest, RouteResult
    from actors.routing.router_stream import StreamStart
    from actors.rpc.channel import ChannelClient
    from actors.rpc.messages import ProviderCall, ProviderReply

    async def run():
        router = ChannelClient(llm.handles.router, "router", sockets=False)
        req = RouteRequest(messages=[{"role": "user", "content": "SPY?"}], provider="mixtral",
                           max_tokens=60)
        via_router = [x async for x in router.stream(req)]
        provider = ChannelClient(llm.provider("claude"), "claude", sockets=False)
        call = ProviderCall(request_id="ray-path-1", completion=Completion(
            messages=[{"role": "user", "content": "SPY?"}], max_tokens=60))
        via_provider = [x async for x in provider.stream(call)]
        return router, via_router, via_provider

    router, via_router, via_provider = asyncio.run(run())
    assert isinstance(via_router[0], StreamStart) and isinstance(via_router[-1], RouteResult)
    assert router.counts["socket"] == 0
    assert isinstance(via_provider[-1], ProviderReply) and via_provider[-1].result
    assert "".join(x.text for x in via_provider if getattr(x, "type", "") == "text") == \
        via_provider[-1].result.text


def test_a_streamed_request_id_replays_its_stored_answer_as_a_stream(oai):
    def ask():
        return list(oai.chat.completions.create(
            model="mixtral", stream=True, max_tokens=60, extra_body={"request_id": "st-1"},
            messages=[{"role": "user", "content": "SPY?"}]))

    first, again = ask(), ask()
    text = lambda chunks: "".join(c.choices[0].delta.content or ""  # noqa: E731
                                  for c in chunks if c.choices)
    assert text(first) == text(again) and text(first)
    assert again[-1].model_extra["router"]["trace"]["replayed"]


def test_http_costs_grouped_by_user(oai, http, llm):
    oai.chat.completions.create(model="llama", user="desk-http", max_tokens=20,
                                messages=[{"role": "user", "content": "hi"}])
    llm.flush()
    r = http.get("/v1/costs", params={"by": "day", "group_by": "user"})
    assert r.status_code == 200 and r.json()["group_by"] == "user"
    rows = {row["user"]: row for row in r.json()["data"]}
    assert rows["desk-http"]["cost_usd"] > 0 and "provider" not in rows["desk-http"]
    bad = http.get("/v1/costs", params={"by": "day", "group_by": "desk"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"


def test_sync_stream_for_scripts_without_asyncio(llm):
    s = llm.stream_sync("Is SPY bullish?", provider="mixtral", max_tokens=80, output=Signal)
    events = list(s)
    assert events and events[-1].type == "finish" and s.start.provider == "mixtral"
    assert s.text == s.result.text and isinstance(s.result.parsed, Signal)
    early = llm.stream_sync("Is SPY bullish?", provider="llama", max_tokens=80)
    for _ in early:
        break  # leaving early cancels the call; the client keeps working
    assert llm.complete("hi", provider="llama", max_tokens=20).text


def test_sdk_stream_with_n_choices_relays_each_choice_with_its_index(oai, llm):
    """n > 1 streamed: every chunk names its choice, each choice's text arrives whole and
    ends with its own finish_reason, and usage counts all of them."""
    stream = oai.chat.completions.create(
        model="gpt-4-turbo", stream=True, n=2, stream_options={"include_usage": True},
        max_tokens=60, messages=[{"role": "user", "content": "Is SPY overbought?"}])
    chunks = list(stream)
    texts: dict[int, str] = {}
    finished: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                finished[ch.index] = ch.finish_reason
    assert sorted(texts) == [0, 1] and all(texts.values())
    assert sorted(finished) == [0, 1]
    usage = chunks[-1].usage
    rid = chunks[0].id.removeprefix("chatcmpl-")
    attempt = [r for r in llm.audit(rid) if r.get("attempt")][-1]
    assert usage is not None and attempt["output_tokens"] == usage.completion_tokens > 0


def test_a_streamed_request_uses_the_response_cache_like_a_plain_one(llm, oai):
    """cache both: the first stream pays and is kept, the second streams the kept answer
    with no provider call and no cost; cache only on a miss fails without calling one;
    over HTTP the header asks and the cached stream says so."""
    import asyncio

    from actors.core.errors import ErrorClass

    prompt = "Stream-cache check: is IWM in a range?"

    async def once(**kw):
        async with llm.stream(prompt, provider="claude", max_tokens=80, **kw) as s:
            events = [ev async for ev in s]
        return s, events

    first, _ = asyncio.run(once(cache="both"))
    before = sim_count(llm, first.result.model, "requests")
    second, events = asyncio.run(once(cache="both"))
    assert sim_count(llm, first.result.model, "requests") == before  # no provider call
    assert second.start.cached and second.result.trace.cached
    assert second.result.cost_usd == 0 and second.result.trace.saved_usd == first.result.cost_usd
    assert second.text == first.text and events and events[-1].type == "finish"
    with pytest.raises(RoutingError) as err:
        asyncio.run(once(cache="only", temperature=0.3))  # another request: a miss
    assert err.value.error_class is ErrorClass.CACHE_MISS

    with httpx.Client(base_url=str(oai.base_url), headers={
            "authorization": f"Bearer {oai.api_key}", "x-router-cache": "read"}) as c:
        body = {"model": "claude", "stream": True, "max_tokens": 80,
                "messages": [{"role": "user", "content": prompt}]}
        with c.stream("POST", "chat/completions", json=body) as r:
            assert r.status_code == 200 and r.headers.get("x-router-cache") == "hit"
            text = "".join(
                json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in r.iter_lines()
                if line.startswith("data: {") and json.loads(line[6:])["choices"])
    assert text == first.text
    assert sim_count(llm, first.result.model, "requests") == before
