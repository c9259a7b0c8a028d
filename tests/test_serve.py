"""The HTTP endpoint end to end: real Serve app, real router actors, loopback simulator, and the
official `openai` SDK as the client of the OpenAI-compatible routes. Auth is on throughout, and
two more apps on the same Serve instance cover a route prefix and explicit anonymous access."""

from __future__ import annotations

import os
import time
import uuid

import httpx
import openai
import pytest

from actors.api import RouterClient, connect
from actors.config import parse_config
from serve.ingress import free_port as ingress_free_port
from tests.conftest import make_config, sim, sim_reset

TOKEN, ADMIN = "client-token-3f9a-8c2e41", "admin-token-77c1-5d9b0a"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}
BODY_LIMIT = 256 * 1024
WINDOW = 8000  # every provider's context window here, so an oversize prompt fits the body limit


def free_port() -> int:
    """A free port below the kernel's ephemeral range: one the kernel picked (bind to 0)
    can be taken by an outgoing connection before the server binds it (CI run 9: HAProxy's
    frontend failed "Address already in use" on 34323)."""
    return ingress_free_port("127.0.0.1")


@pytest.fixture(scope="module")
def stack(ray_cluster, tmp_path_factory):
    from ray import serve

    from serve.run import deploy, load_serve_config

    data = make_config(tmp_path_factory.mktemp("serve"),
                       budgets={"per_provider": {"gpt-4-turbo": {"hourly_usd": 0.0001}}},
                       serve={"max_body_bytes": BODY_LIMIT, "max_timeout_s": 60})
    for p in data["providers"]:
        p["max_input_tokens"] = WINDOW
    cfg = parse_config(data)
    os.environ.update(LLM_ROUTER_API_TOKEN=TOKEN, LLM_ROUTER_ADMIN_TOKEN=ADMIN)
    try:
        llm = connect(config=cfg)
        schema = load_serve_config()
        schema.applications[0].deployments[0].ray_actor_options.num_cpus = 0
        url = deploy(cfg, schema, port=free_port())
    finally:
        for k in ("LLM_ROUTER_API_TOKEN", "LLM_ROUTER_ADMIN_TOKEN"):
            os.environ.pop(k, None)
    yield url, llm, cfg
    serve.shutdown()
    llm.shutdown(stop_ray=False)


@pytest.fixture(scope="module")
def url(stack) -> str:
    return stack[0]


def _variant(stack, name: str, prefix: str, **serve_section) -> str:
    """One more app on the same Serve instance (same port), its own route prefix and
    `serve:` section, attached to the same router."""
    from serve.run import deploy, load_serve_config

    base, _llm, cfg = stack
    data = cfg.model_dump(mode="json")
    data["serve"] = {**data["serve"], **serve_section}
    schema = load_serve_config()
    app = schema.applications[0]
    app.name, app.route_prefix = name, prefix
    app.deployments[0].ray_actor_options.num_cpus = 0
    app.deployments[0].autoscaling_config = {"min_replicas": 1, "max_replicas": 1}
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    os.environ.update(LLM_ROUTER_API_TOKEN=TOKEN, LLM_ROUTER_ADMIN_TOKEN=ADMIN)
    try:
        return deploy(parse_config(data), schema, port=port)
    finally:
        for k in ("LLM_ROUTER_API_TOKEN", "LLM_ROUTER_ADMIN_TOKEN"):
            os.environ.pop(k, None)


@pytest.fixture(scope="module")
def prefixed(stack) -> str:
    return _variant(stack, "llm-prefixed", "/llm")


@pytest.fixture(scope="module")
def anonymous(stack, tmp_path_factory) -> str:
    """`anonymous: true` on loopback, and no token variable the config names is set."""
    return _variant(stack, "llm-anonymous", "/anon",
                    auth={"anonymous": True, "token_env": "NO_SUCH_TOKEN_VAR",
                          "admin_token_env": "NO_SUCH_ADMIN_VAR"})


@pytest.fixture(scope="module")
def llm(stack) -> RouterClient:
    return stack[1]


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def oai(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0, timeout=30)


# -- OpenAI-compatible, through the official SDK ---------------------------------------------

def test_sdk_chat_completion_has_usage_trace_and_headers(oai, llm):
    raw = oai.chat.completions.with_raw_response.create(
        model="cost-aware", max_tokens=200,
        messages=[{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "SPY 1d, RSI 61. Bullish?"}])
    r = raw.parse()
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    extra = r.model_extra["router"]
    assert r.model == extra["provider"] == extra["trace"]["chosen"] in llm.config.names
    assert extra["policy"] == "cost-aware" and extra["cost_usd"] > 0
    assert raw.headers["x-router-provider"] == r.model
    assert raw.headers["x-router-policy"] == "cost-aware"
    assert r.id == "chatcmpl-" + raw.headers["x-router-request-id"]


def test_sdk_pinned_provider_extra_body_and_structured_output(oai):
    r = oai.chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "llama"
    r = oai.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Trade signal for SPY as JSON."}],
        extra_body={"fallbacks": ["mixtral", "gemini"], "output": "trade_signal",
                    "context": {"task": "analysis", "regime": "bull"}})
    extra = r.model_extra["router"]
    assert r.model == "mixtral" and extra["parsed"]["direction"] in ("long", "short", "flat")
    assert extra["trace"]["context"]["regime"] == "bull"


def test_sdk_streaming_is_openai_sse(oai):
    stream = oai.chat.completions.create(
        model="latency-aware", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Is QQQ overbought?"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_sdk_models_lists_providers_and_aliases(oai, llm):
    ids = [m.id for m in oai.models.list()]
    assert ids[:len(llm.config.names)] == llm.config.names
    assert {"auto", "accuracy-first", "cost-aware", "latency-aware"} <= set(ids)


def test_sdk_errors_are_typed(oai, url):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "model" and "gpt-9" in info.value.body["message"]
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="auto", max_tokens=10**6,
                                    messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "max_tokens"


def test_simulated_answers_say_so_everywhere(oai, http, llm):
    raw = oai.chat.completions.with_raw_response.create(
        model="llama", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-router-simulated"] == "true"
    assert raw.parse().model_extra["router"]["trace"]["simulated"] is True
    owners = {m["id"]: m["owned_by"] for m in http.get("/v1/models").json()["data"]}
    assert {owners[n] for n in llm.config.names} == {"llm-router-simulator"}
    assert owners["auto"] == "llm-router"


def test_request_id_is_an_idempotency_key_over_http(http):
    rid = f"http-{uuid.uuid4().hex[:10]}"
    body = {"model": "cost-aware", "request_id": rid,
            "messages": [{"role": "user", "content": "SPY 1d: long or short?"}]}
    first = http.post("/v1/chat/completions", json=body)
    again = http.post("/v1/chat/completions", json={**body, "timeout": 30})
    assert first.status_code == again.status_code == 200, again.text
    assert "x-router-replayed" not in first.headers and again.headers["x-router-replayed"] == "true"
    assert again.json()["choices"] == first.json()["choices"]
    assert again.json()["usage"] == first.json()["usage"]
    assert again.headers["x-router-cost-usd"] == first.headers["x-router-cost-usd"]
    other = http.post("/v1/chat/completions",
                      json={**body, "messages": [{"role": "user", "content": "QQQ?"}]})
    assert other.status_code == 409, other.text
    err = other.json()["error"]
    assert err["type"] == "idempotency_conflict" and err["param"] == "request_id"
    assert rid in err["message"]
    crlf = http.post("/v1/chat/completions", json={**body, "request_id": "a\r\nx-evil: 1"})
    assert crlf.status_code == 400 and crlf.json()["error"]["param"] == "request_id"
    assert "x-evil" not in crlf.headers


def test_costs_take_a_window(http):
    now = time.time()
    r = http.get("/v1/costs", params={"by": "hour", "since": now - 7200, "until": now + 60})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["since"] < body["until"] and body["by"] == "hour"
    assert all({"period", "provider", "model", "simulated", "cost_usd"} <= set(row)
               for row in body["data"])
    r = http.get("/v1/costs", params={"by": "day", "since": "2001-01-01T00:00:00Z",
                                      "until": "2001-01-03"})
    assert r.status_code == 200 and r.json()["data"] == []
    for params, param in [({"since": "yesterday"}, "since"), ({"until": "soon"}, "until"),
                          ({"since": 0}, "since"), ({"since": now, "until": now - 10}, "since")]:
        r = http.get("/v1/costs", params=params)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (params, r.text)


# -- native API -----------------------------------------------------------------------------

def _bars(n: int = 300) -> list[dict]:
    from prompts import load_sample

    df = load_sample("sp500").iloc[-n:].reset_index()
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%d")
    return df.to_dict(orient="records")


def test_analyze_bars_and_context_give_validated_signals(http):
    from prompts import TradeSignal, build_context, load_sample

    r = http.post("/v1/analyze", json={"bars": _bars(), "symbol": "SPX", "timeframe": "1d",
                                       "policy": "accuracy-first"})
    assert r.status_code == 200, r.text
    body = r.json()
    TradeSignal.model_validate(body["signal"])
    assert body["trace"]["context"]["task"] == "analysis" and body["trace"]["context"]["regime"]
    assert body["provider"] == r.headers["x-router-provider"] and body["cost_usd"] > 0
    ctx = build_context(load_sample("sp500").iloc[-300:], "SPX", "1d")
    r = http.post("/v1/analyze", json={"context": ctx.model_dump(mode="json"), "task": "pattern",
                                       "provider": "gemini"})
    assert r.status_code == 200, r.text
    assert r.json()["provider"] == "gemini" and r.json()["trace"]["context"]["task"] == "pattern"


def test_risk_takes_a_trade_proposal(http):
    from prompts import RiskAssessment

    proposal = {"side": "long", "entry": 2500.0, "stop": 2450.0, "size": 10,
                "account_equity": 100000}
    r = http.post("/v1/risk", json={"bars": _bars(), "symbol": "SPX", "timeframe": "1d",
                                    "proposal": proposal})
    assert r.status_code == 200, r.text
    assert RiskAssessment.model_validate(r.json()["risk"]).risk_score >= 0
    assert r.json()["trace"]["context"]["task"] == "risk"


def test_reports_feedback_and_audit(http, llm):
    r = http.post("/v1/chat/completions", json={"model": "claude",
                                                "messages": [{"role": "user", "content": "hi"}]})
    rid = r.headers["x-router-request-id"]
    providers = {p["provider"]: p for p in http.get("/v1/providers").json()["data"]}
    assert set(providers) == set(llm.config.names)
    assert {"state", "success_rate", "p50_s", "rpm", "max_concurrency"} <= set(providers["claude"])
    costs = http.get("/v1/costs", params={"by": "day"}).json()
    assert costs["by"] == "day" and sum(row["cost_usd"] for row in costs["data"]) > 0
    assert any(row.get("provider") == "claude" for row in http.get("/v1/performance").json()["data"])
    assert http.get("/v1/budgets").json()["data"]
    assert http.post("/v1/feedback", json={"request_id": rid, "score": 1.0}).json()["ok"]
    rows = http.get(f"/v1/requests/{rid}").json()["records"]
    assert rows[0]["provider"] == "claude" and rows[-1]["score"] == 1.0
    assert http.get("/v1/requests/no-such-id").status_code == 404


def test_health_is_public_and_everything_else_needs_the_token(url):
    with httpx.Client(base_url=url, timeout=30) as anon:
        assert anon.get("/healthz").json()["status"] == "ok"
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/providers"),
                             ("POST", "/v1/chat/completions"), ("GET", "/v1/costs")]:
            r = anon.request(method, path)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            assert "Traceback" not in r.text
        r = anon.get("/v1/models", headers={"authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid bearer token"
        assert anon.get("/v1/models", headers={"authorization": "Basic abc"}).status_code == 401


def test_deadline_budget_and_no_provider_statuses(http, llm):
    llama = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    sim(llm, llama, base_ms=200_000)  # × latency_scale 0.02 = 4 s
    try:
        r = http.post("/v1/chat/completions", headers={"x-request-timeout": "0.5"},
                      json={"model": "llama", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 504, r.text
        assert r.json()["error"]["type"] == "deadline_exceeded"
    finally:
        sim_reset(llm, llama)
    r = http.post("/v1/chat/completions", json={"model": "gpt-4-turbo",
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 402 and r.json()["error"]["type"] == "budget_exceeded"
    assert "hourly budget" in r.json()["error"]["message"]
    sim(llm, "claude-sonnet-4-5", server_error=1.0)
    try:
        r = http.post("/v1/chat/completions", json={"model": "claude",
                                                    "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["type"] == "no_provider_available" and "server" in err["providers"]["claude"]
        for _ in range(3):  # 3 consecutive failures open the breaker; then it refuses at once
            r = http.post("/v1/chat/completions",
                          json={"model": "claude", "messages": [{"role": "user", "content": "x"}]})
            assert r.status_code == 503
        assert "breaker_open" in r.json()["error"]["providers"]["claude"]
    finally:
        sim_reset(llm, "claude-sonnet-4-5")


def test_admin_reset_needs_the_admin_token(http, llm):
    assert http.post("/v1/providers/claude/reset", json={}).status_code == 403
    assert http.post("/v1/providers/claude/reset", json={},
                     headers={"authorization": "Bearer x"}).status_code == 401
    r = http.post("/v1/providers/claude/reset", json={}, headers=ADMIN_AUTH)
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert http.post("/v1/providers/gpt-9/reset", json={}, headers=ADMIN_AUTH).status_code == 404
    # a body-less POST (what a cross-site form or no-cors fetch can send) is refused
    assert http.post("/v1/providers/claude/reset", headers=ADMIN_AUTH).status_code == 415
    r = http.post("/v1/chat/completions", json={"model": "claude",
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200


# -- malformed input ------------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]
BAR = [{"timestamp": "2020-01-01", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}]
HUGE_PROMPT = "x" * (WINDOW * 4 * 2)  # ~2× every window, still under the body limit

#: (name, method, path, json body | raw bytes | None, status, error type, param)
CORPUS = [
    ("bad json", "POST", "/v1/chat/completions", b'{"model": "auto",', 400, "invalid_request_error", None),
    ("empty body", "POST", "/v1/chat/completions", b"", 400, "invalid_request_error", None),
    ("json array", "POST", "/v1/chat/completions", [1, 2], 400, "invalid_request_error", None),
    ("json string", "POST", "/v1/chat/completions", "hello", 400, "invalid_request_error", None),
    ("no model", "POST", "/v1/chat/completions", {"messages": MSG}, 400, "invalid_request_error", "model"),
    ("no messages", "POST", "/v1/chat/completions", {"model": "auto"}, 400, "invalid_request_error", "messages"),
    ("empty messages", "POST", "/v1/chat/completions", {"model": "auto", "messages": []}, 400, "invalid_request_error", "messages"),
    ("messages not a list", "POST", "/v1/chat/completions", {"model": "auto", "messages": "hi"}, 400, "invalid_request_error", "messages"),
    ("bad role", "POST", "/v1/chat/completions", {"model": "auto", "messages": [{"role": "robot", "content": "x"}]}, 400, "invalid_request_error", "messages[0].role"),
    ("content wrong type", "POST", "/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": 5}]}, 400, "invalid_request_error", "messages[0].content"),
    ("image part", "POST", "/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "invalid_request_error", "messages[0].content"),
    ("only system", "POST", "/v1/chat/completions", {"model": "auto", "messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error", "messages"),
    ("unknown model", "POST", "/v1/chat/completions", {"model": "gpt-9", "messages": MSG}, 404, "invalid_request_error", "model"),
    ("model wrong type", "POST", "/v1/chat/completions", {"model": 7, "messages": MSG}, 400, "invalid_request_error", "model"),
    ("max_tokens zero", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "max_tokens": 0}, 400, "invalid_request_error", "max_tokens"),
    ("max_tokens negative", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "max_tokens": -5}, 400, "invalid_request_error", "max_tokens"),
    ("max_tokens huge", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "max_tokens": 10**7}, 400, "invalid_request_error", "max_tokens"),
    ("max_tokens string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "max_tokens": "many"}, 400, "invalid_request_error", "max_tokens"),
    ("max_tokens over pinned", "POST", "/v1/chat/completions", {"model": "llama", "messages": MSG, "max_tokens": 9000}, 400, "invalid_request_error", "max_tokens"),
    ("temperature high", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "temperature": 3}, 400, "invalid_request_error", "temperature"),
    ("n above 16", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "n": 17}, 400, "invalid_request_error", "n"),
    ("logprobs pinned to claude", "POST", "/v1/chat/completions", {"model": "claude", "messages": MSG, "logprobs": True}, 400, "invalid_request_error", "logprobs"),
    ("tools", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "tools": []}, 400, "invalid_request_error", "tools"),
    ("unknown fallback", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "fallbacks": ["gpt-9"]}, 400, "invalid_request_error", "fallbacks[0]"),
    ("bad output", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "output": "poem"}, 400, "invalid_request_error", "output"),
    ("timeout negative", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "timeout": -1}, 400, "invalid_request_error", "timeout"),
    ("timeout above limit", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "timeout": 9999}, 400, "invalid_request_error", "timeout"),
    ("prompt over every window", "POST", "/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": HUGE_PROMPT}]}, 400, "context_too_long", "messages"),
    ("body over limit", "POST", "/v1/chat/completions", b'{"model": "auto", "x": "' + b"y" * BODY_LIMIT + b'"}', 413, "request_too_large", None),
    ("analyze neither", "POST", "/v1/analyze", {"symbol": "SPX"}, 400, "invalid_request_error", None),
    ("analyze bars no symbol", "POST", "/v1/analyze", {"bars": [{"timestamp": "2020-01-01", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}], "timeframe": "1d"}, 400, "invalid_request_error", None),
    ("analyze too few bars", "POST", "/v1/analyze", {"bars": [{"timestamp": "2020-01-01", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}], "symbol": "X", "timeframe": "1d"}, 400, "invalid_request_error", "bars"),
    ("analyze bad timeframe", "POST", "/v1/analyze", {"bars": BAR, "symbol": "X", "timeframe": "2d"}, 400, "invalid_request_error", "timeframe"),
    ("analyze bar missing close", "POST", "/v1/analyze", {"bars": [{"timestamp": "2020-01-01", "open": 1, "high": 1, "low": 1, "volume": 1}], "symbol": "X", "timeframe": "1d"}, 400, "invalid_request_error", "bars[0].close"),
    ("analyze unknown policy", "POST", "/v1/analyze", {"bars": BAR, "symbol": "X", "timeframe": "1d", "policy": "cheapest"}, 400, "invalid_request_error", "policy"),
    ("analyze unknown provider", "POST", "/v1/analyze", {"bars": BAR, "symbol": "X", "timeframe": "1d", "provider": "gpt-9"}, 400, "invalid_request_error", "provider"),
    ("analyze bad context", "POST", "/v1/analyze", {"context": {"symbol": "X"}}, 400, "invalid_request_error", "context.timeframe"),
    ("analyze bad task", "POST", "/v1/analyze", {"symbol": "X", "task": "risk"}, 400, "invalid_request_error", "task"),
    ("risk no proposal", "POST", "/v1/risk", {"bars": BAR, "symbol": "X", "timeframe": "1d"}, 400, "invalid_request_error", "position"),
    ("risk stop on wrong side", "POST", "/v1/risk", {"symbol": "X", "timeframe": "1d", "bars": [{"timestamp": "2020-01-01", "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}], "position": {"side": "long", "entry": 100, "stop": 110, "size": 1}}, 400, "invalid_request_error", "position"),
    ("feedback score > 1", "POST", "/v1/feedback", {"request_id": "x", "score": 2}, 400, "invalid_request_error", "score"),
    ("feedback unknown id", "POST", "/v1/feedback", {"request_id": "nope", "score": 0.5}, 404, "not_found_error", "request_id"),
    ("costs by week", "GET", "/v1/costs?by=week", None, 400, "invalid_request_error", "by"),
    ("unknown route", "GET", "/v1/nothing", None, 404, "not_found_error", None),
    ("wrong method", "DELETE", "/v1/models", None, 405, "invalid_request_error", None),
    ("bad timeout header", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG}, 400, "invalid_request_error", "timeout"),
    # JSON types taken as they are, as the OpenAI API does (no "yes" → true, "5" → 5)
    ("stream as string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "stream": "yes"}, 400, "invalid_request_error", "stream"),
    ("stream as number", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "stream": 1}, 400, "invalid_request_error", "stream"),
    ("max_tokens numeric string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "max_tokens": "5"}, 400, "invalid_request_error", "max_tokens"),
    ("max_tokens float", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "max_tokens": 5.5}, 400, "invalid_request_error", "max_tokens"),
    ("temperature string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "temperature": "0.5"}, 400, "invalid_request_error", "temperature"),
    ("n as bool", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "n": True}, 400, "invalid_request_error", "n"),
    ("seed string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "seed": "42"}, 400, "invalid_request_error", "seed"),
    ("user number", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "user": 7}, 400, "invalid_request_error", "user"),
    ("include_usage string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "stream": True, "stream_options": {"include_usage": "true"}}, 400, "invalid_request_error", "stream_options.include_usage"),
    ("context number value", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "context": {"regime": 1}}, 400, "invalid_request_error", "context.regime"),
    ("timeout string", "POST", "/v1/chat/completions", {"model": "auto", "messages": MSG, "timeout": "20"}, 400, "invalid_request_error", "timeout"),
    ("analyze close string", "POST", "/v1/analyze", {"bars": [{**BAR[0], "close": "1"}], "symbol": "X", "timeframe": "1d"}, 400, "invalid_request_error", "bars[0].close"),
    ("analyze max_tokens string", "POST", "/v1/analyze", {"bars": BAR, "symbol": "X", "timeframe": "1d", "max_tokens": "100"}, 400, "invalid_request_error", "max_tokens"),
    ("feedback score string", "POST", "/v1/feedback", {"request_id": "x", "score": "1"}, 400, "invalid_request_error", "score"),
    ("feedback id number", "POST", "/v1/feedback", {"request_id": 5, "score": 1}, 400, "invalid_request_error", "request_id"),
]


def test_admin_budget_change(http, llm):
    body = {"per_provider": {"gpt-4-turbo": {"hourly_usd": 0.0001}}, "daily_usd": 1000}
    assert http.put("/v1/budgets", json=body).status_code == 403  # client token: not enough
    r = http.put("/v1/budgets", json=body, headers=ADMIN_AUTH)
    assert r.status_code == 200
    rows = {(x["scope"], x["window"]): x for x in r.json()["data"]}
    assert rows[("*", "daily")]["limit_usd"] == 1000
    bad = http.put("/v1/budgets", json={"daily_usd": -1}, headers=ADMIN_AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "daily_usd"
    assert http.put("/v1/budgets", content=b"{", headers={
        **ADMIN_AUTH, "content-type": "application/json"}).status_code == 400
    assert http.put("/v1/budgets", content=b"{}", headers={
        **ADMIN_AUTH, "content-type": "text/plain"}).status_code == 415
    llm.set_budgets({"per_provider": {"gpt-4-turbo": {"hourly_usd": 0.0001}}})


def test_malformed_corpus_gets_clear_4xx_and_service_survives(url):
    assert len(CORPUS) >= 30
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
        for name, method, path, body, status, type_, param in CORPUS:
            headers = {"x-request-timeout": "soon"} if name == "bad timeout header" else {}
            if isinstance(body, bytes):
                r = c.request(method, path, content=body,
                              headers={**headers, "content-type": "application/json"})
            else:
                r = c.request(method, path, json=body, headers=headers)
            assert r.status_code == status, (name, r.status_code, r.text[:300])
            err = r.json()["error"]
            assert err["type"] == type_, (name, err)
            assert err["param"] == param, (name, err)
            assert len(err["message"]) > 5 and "Traceback" not in r.text, (name, err)
        r = c.post("/v1/chat/completions", json={"model": "auto", "messages": MSG})
        assert r.status_code == 200 and c.get("/healthz").status_code == 200


# -- fail closed: content type, Host, route prefix, anonymous -------------------------------

@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_bodies_must_be_declared_json(url, ctype):
    """What a web page can send cross-origin without a CORS preflight never gets through."""
    body = b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}'
    headers = {**AUTH, **({"content-type": ctype} if ctype else {})}
    r = httpx.post(url + "/v1/chat/completions", content=body, headers=headers, timeout=30)
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "application/json" in err["message"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"])
def test_foreign_host_names_are_refused(url, host):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 still says so."""
    for method, path in [("GET", "/healthz"), ("GET", "/v1/models"),
                         ("PUT", "/v1/budgets")]:
        r = httpx.request(method, url + path, headers={**ADMIN_AUTH, "host": host},
                          json={}, timeout=30)
        assert r.status_code == 400, (method, path, r.text)
        assert r.json()["error"]["code"] == "host_not_allowed"
    assert httpx.get(url + "/healthz", headers={"host": "localhost"}, timeout=30).status_code == 200


def test_admin_routes_stay_admin_under_a_route_prefix(prefixed, llm):
    with httpx.Client(base_url=prefixed, timeout=30) as c:
        assert c.get("/healthz").json()["status"] == "ok"  # public under the prefix too
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers=AUTH).status_code == 200
        r = c.put("/v1/budgets", json={}, headers=AUTH)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
        r = c.post("/v1/providers/claude/reset", json={}, headers=AUTH)
        assert r.status_code == 403
        r = c.post("/v1/providers/claude/reset", json={}, headers=ADMIN_AUTH)
        assert r.status_code == 200 and r.json()["provider"] == "claude"


def test_anonymous_loopback_serves_clients_but_never_admin_routes(anonymous, llm):
    before = llm.budgets()
    with httpx.Client(base_url=anonymous, timeout=30) as c:
        r = c.post("/v1/chat/completions", json={"model": "claude", "messages": MSG})
        assert r.status_code == 200, r.text
        for method, path in [("PUT", "/v1/budgets"), ("POST", "/v1/providers/claude/reset")]:
            r = c.request(method, path, json={})
            assert r.status_code == 403, (path, r.text)
            err = r.json()["error"]
            assert err["code"] == "admin_disabled" and "NO_SUCH_ADMIN_VAR" in err["message"]
    after = llm.budgets()
    assert before[["scope", "window", "limit_usd"]].equals(after[["scope", "window", "limit_usd"]])
