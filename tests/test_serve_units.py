"""The HTTP skin's plain parts, without Ray: error mapping, auth, OpenAI translation, limits,
and the Serve config file."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI, Request

from actors.config import ConfigError, load_config, parse_config
from actors.route import RoutingError, RoutingTrace, TraceAttempt
from serve import openai_compat as oai
from serve.auth import Tokens, check, needs
from serve.errors import ApiError, from_routing_error, from_validation, install
from serve.middleware import Gate
from serve.run import app_schema, deployment_options, load_serve_config
from serve.spec import ServeSpec
from tests.conftest import make_config


def trace(excluded=None, attempts=()) -> RoutingTrace:
    return RoutingTrace(request_id="r1", policy="accuracy-first", excluded=excluded or {},
                        attempts=[TraceAttempt(provider=p, attempt=1, ok=False, error_class=c,
                                               error="boom") for p, c in attempts])


@pytest.mark.parametrize("cls, excluded, attempts, status, type_, param", [
    ("bad_request", {}, (), 400, "invalid_request_error", None),
    ("no_provider", {"a": "context_too_long: ~9 > 8", "b": "context_too_long: ~9 > 4"}, (),
     400, "context_too_long", "messages"),
    ("no_provider", {"a": "max_tokens 9 > limit 8"}, (), 400, "invalid_request_error",
     "max_tokens"),
    ("budget_exceeded", {"a": "budget_exceeded: …"}, (), 402, "budget_exceeded", None),
    ("deadline", {}, (), 504, "deadline_exceeded", "timeout"),
    ("no_provider", {}, [("a", "deadline")], 504, "deadline_exceeded", "timeout"),
    ("no_provider", {"a": "breaker_open"}, [("b", "server")], 503, "no_provider_available", None),
    ("no_provider", {"a": "context_too_long: ~9 > 8", "b": "breaker_open"}, (), 503,
     "no_provider_available", None),
    ("internal", {}, (), 500, "internal_error", None),
])
def test_routing_errors_map_to_statuses(cls, excluded, attempts, status, type_, param):
    err = from_routing_error(RoutingError(cls, "why\nTraceback (most recent call last): x",
                                          trace(excluded, attempts)))
    assert (err.status, err.type, err.param) == (status, type_, param)
    assert err.headers["x-router-request-id"] == "r1"
    if cls == "internal":
        assert "Traceback" not in err.message


def test_validation_errors_name_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        oai.ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user",
                                                                        "content": 3}]})
    err = from_validation(info.value.errors())
    assert err.status == 400 and err.param == "messages[0].content"
    with pytest.raises(ValidationError) as info:
        oai.ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user",
                                                                        "content": "x"}],
                                        "logit_bias": {}})
    assert from_validation(info.value.errors()).message == "unsupported parameter 'logit_bias'"


@pytest.mark.parametrize("tokens, presented, admin, status", [
    (Tokens(None, None, "A"), None, True, None),           # no tokens configured: open
    (Tokens("c", "a", "A"), "c", False, None),
    (Tokens("c", "a", "A"), "a", False, None),             # admin may do anything
    (Tokens("c", "a", "A"), None, False, 401),
    (Tokens("c", "a", "A"), "x", False, 401),
    (Tokens("c", "a", "A"), "", False, 401),
    (Tokens("c", "a", "A"), "a", True, None),
    (Tokens("c", "a", "A"), "c", True, 403),
    (Tokens("c", "a", "A"), "x", True, 401),
    (Tokens("c", None, "A"), "c", True, 403),              # admin token unset: admin disabled
    (Tokens(None, "a", "A"), None, False, None),           # only admin set: reads stay open
    (Tokens(None, "a", "A"), None, True, 401),
])
def test_auth_matrix(tokens, presented, admin, status):
    if status is None:
        check(tokens, presented, admin=admin)
        return
    with pytest.raises(ApiError) as info:
        check(tokens, presented, admin=admin)
    assert info.value.status == status
    assert "c" != info.value.message and "a" != info.value.message


def test_model_aliases_and_route_translation():
    cfg = load_config()
    assert oai.resolve_model("claude", cfg) == ("claude", None)
    assert oai.resolve_model("auto", cfg) == (None, None)
    assert oai.resolve_model("cost-aware", cfg) == (None, "cost-aware")
    with pytest.raises(ApiError) as info:
        oai.resolve_model("gpt-9", cfg)
    assert info.value.status == 404 and info.value.param == "model"
    req = oai.ChatRequest.model_validate({
        "model": "latency-aware", "max_completion_tokens": 50, "user": "u1",
        "messages": [{"role": "developer", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "a"},
                                                  {"type": "text", "text": "b"}]}]})
    route = oai.to_route(req, cfg, 4096, 7.0)
    assert route.policy == "latency-aware" and route.provider is None and route.timeout == 7.0
    assert route.max_tokens == 50 and [m.role for m in route.messages] == ["system", "user"]
    assert route.messages[1].content == "ab"
    with pytest.raises(ApiError, match="above the limit"):
        oai.to_route(req.model_copy(update={"max_completion_tokens": 5000}), cfg, 4096, None)


def test_stream_events_are_sse_with_done():
    from actors.route import RouteResult

    r = RouteResult(request_id="x", provider="llama", model="m", text="y" * 600,
                    finish_reason="length", input_tokens=3, output_tokens=4, cost_usd=0.1,
                    latency_s=0.2, trace=RoutingTrace(request_id="x", policy="p"))
    events = list(oai.stream_events(r, include_usage=True))
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    assert events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                   if c["choices"]) == r.text
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["total_tokens"] == 7 and chunks[-1]["choices"] == []


def test_admin_paths_and_public_health():
    assert needs("POST", "/v1/providers/claude/reset", True) == "admin"
    assert needs("GET", "/v1/providers", True) == "client"
    assert needs("GET", "/healthz", True) is None
    assert needs("GET", "/healthz", False) == "client"
    assert needs("GET", "/v1/nothing-here", True) == "client"  # no route enumeration


async def test_gate_checks_tokens_and_refuses_declared_and_streamed_bodies():
    app = FastAPI()
    app.state.max_body_bytes = 100
    app.state.tokens = Tokens("c", "a", "A")
    app.state.public_health = True
    app.add_middleware(Gate)
    install(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"n": len(await request.body())}

    async def chunks():
        for _ in range(5):
            yield b"x" * 40

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as anon:
        r = await anon.post("/echo", content=b"x")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"authorization": "Bearer c"}) as c:
        assert (await c.post("/echo", content=b"x" * 100)).json() == {"n": 100}
        r = await c.post("/echo", content=b"x" * 101)
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
        r = await c.post("/echo", content=chunks())  # chunked: no Content-Length
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"


def test_serve_yaml_is_a_valid_serve_config_with_autoscaling(monkeypatch):
    schema = load_serve_config()
    app = app_schema(schema)
    assert app.import_path == "serve.app:build"
    monkeypatch.setenv("LLM_ROUTER_API_TOKEN", "t0k")
    opts = deployment_options(app, ServeSpec())
    scaling = opts["autoscaling_config"]
    assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] > scaling["min_replicas"]
    assert opts["max_ongoing_requests"] > scaling["target_ongoing_requests"]
    assert opts["max_queued_requests"] > 0  # back-pressure: 503 instead of an endless queue
    assert opts["ray_actor_options"]["runtime_env"]["env_vars"] == {"LLM_ROUTER_API_TOKEN": "t0k"}


def test_serve_spec_errors_name_the_key(tmp_path):
    cfg = parse_config(make_config(tmp_path, serve={"max_body_byte": 5}))
    with pytest.raises(ConfigError, match=r"serve\.max_body_byte: unknown key"):
        ServeSpec.from_config(cfg)
    cfg = parse_config(make_config(tmp_path, serve={"max_tokens_limit": 1000}))
    assert ServeSpec.from_config(cfg).token_limit(cfg) == 1000
