"""The HTTP skin's plain parts, without Ray: error mapping, auth, OpenAI translation, limits,
and the Serve config file."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI, Request

from actors.config import ConfigError, load_config, parse_config
from actors.routing.route import RoutingError, RoutingTrace, TraceAttempt
from serve import openai_compat as oai
from serve.auth import Access, Verifier, digests
from serve.errors import ApiError, from_routing_error, from_validation, install
from serve.hosts import HostAllowList
from serve.middleware import ADMIN_ONLY, Gate, GateSettings
from serve.run import app_schema, deployment_options, load_serve_config
from serve.spec import AuthSpec, ServeSpec
from tests.conftest import make_config

C, A = "client-token-0123456789", "admin-token-0123456789"


def verifier(client: str | None = C, admin: str | None = A) -> Verifier:
    env = {k: v for k, v in (("LLM_ROUTER_API_TOKEN", client),
                             ("LLM_ROUTER_ADMIN_TOKEN", admin)) if v}
    return Verifier.from_digests(digests(AuthSpec(anonymous=client is None), env))


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


@pytest.mark.parametrize("client, admin, presented, access, status", [
    (None, None, None, Access.CLIENT, None),        # anonymous (loopback only): client routes
    (None, None, None, Access.ADMIN, 403),          # ... but never admin ones
    (None, None, A, Access.ADMIN, 403),             # no admin token configured: disabled
    (None, A, A, Access.ADMIN, None),
    (None, A, None, Access.ADMIN, 401),
    (C, A, C, Access.CLIENT, None),
    (C, A, A, Access.CLIENT, None),                 # admin may do anything
    (C, A, None, Access.CLIENT, 401),
    (C, A, "x" * 20, Access.CLIENT, 401),
    (C, A, "", Access.CLIENT, 401),
    (C, A, A, Access.ADMIN, None),
    (C, A, C, Access.ADMIN, 403),
    (C, A, "x" * 20, Access.ADMIN, 401),
    (C, None, C, Access.ADMIN, 403),                # admin token unset: admin disabled
    (C, None, None, Access.PUBLIC, None),
])
def test_auth_matrix(client, admin, presented, access, status):
    v = verifier(client, admin)
    if status is None:
        v.check(presented, access)
        return
    with pytest.raises(ApiError) as info:
        v.check(presented, access)
    assert info.value.status == status
    assert C not in info.value.message and A not in info.value.message


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
    from actors.routing.route import RouteResult

    r = RouteResult(request_id="x", provider="llama", model="m", text="y" * 600,
                    finish_reason="length", input_tokens=3, output_tokens=4, cost_usd=0.1,
                    latency_s=0.2, trace=RoutingTrace(request_id="x", policy="p"))
    from actors.routing.router_stream import events_of_route
    from serve.openai_stream import ChunkWriter

    writer = ChunkWriter(r.request_id, r.provider, include_usage=True)
    events = [writer.event(ev) for ev in events_of_route(r)]
    events += [f"data: {e}" for e in writer.end(r).split("data: ") if e]
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    assert events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                   if c["choices"]) == r.text
    assert chunks[-3]["choices"][0]["finish_reason"] == "length"
    assert chunks[-2]["router"]["provider"] == "llama" and chunks[-2]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 7 and chunks[-1]["choices"] == []
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def test_only_health_is_public_whatever_the_route_prefix():
    from starlette._utils import get_route_path

    gate = GateSettings(verifier(), HostAllowList.of(["localhost"]), True, 100)
    for root in ("", "/llm"):  # Serve's route_prefix arrives as root_path
        def access(path: str, root: str = root) -> Access:
            return gate.access(get_route_path({"path": root + path, "root_path": root}))

        assert access("/healthz") is Access.PUBLIC
        assert access("/v1/providers") is Access.CLIENT
        assert access("/v1/nothing-here") is Access.CLIENT  # no route enumeration
    assert GateSettings(gate.verifier, gate.hosts, False, 100).access("/healthz") is Access.CLIENT


def _gate_app() -> FastAPI:
    """A small app behind the real gate: one client route, one admin route."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"n": len(await request.body())}

    @app.put("/v1/budgets", dependencies=[ADMIN_ONLY])
    async def budgets() -> dict:
        return {"ok": True}

    app.state.gate = GateSettings(verifier(), HostAllowList.of(["localhost", "127.0.0.1", "::1"]),
                                  True, 100)
    app.add_middleware(Gate)
    install(app)
    return app


JSON = {"content-type": "application/json"}


async def test_gate_checks_tokens_and_refuses_declared_and_streamed_bodies():
    app = _gate_app()

    async def chunks():
        for _ in range(5):
            yield b"x" * 40

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as anon:
        r = await anon.post("/echo", content=b"x", headers=JSON)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost",
                                 headers={"authorization": f"Bearer {C}", **JSON}) as c:
        assert (await c.post("/echo", content=b"x" * 100)).json() == {"n": 100}
        r = await c.post("/echo", content=b"x" * 101)
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
        r = await c.post("/echo", content=chunks())  # chunked: no Content-Length
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"


async def test_gate_under_a_route_prefix_still_knows_admin_routes():
    app = _gate_app()
    transport = httpx.ASGITransport(app=app, root_path="/llm")
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                 headers=JSON) as c:
        r = await c.put("/llm/v1/budgets", content=b"{}",
                        headers={"authorization": f"Bearer {C}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
        r = await c.put("/llm/v1/budgets", content=b"{}",
                        headers={"authorization": f"Bearer {A}"})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("host, status", [
    ("localhost:8000", 200), ("127.0.0.1:8000", 200), ("[::1]:8000", 200), ("LOCALHOST.", 200),
    ("evil.example:8000", 400), ("localhost.evil.example", 400), ("127.0.0.1.nip.io", 400),
])
async def test_gate_answers_only_allowed_host_names(host, status):
    app = _gate_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as c:
        r = await c.post("/echo", content=b"{}", headers={
            "host": host, "authorization": f"Bearer {C}", **JSON})
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"]["code"] == "host_not_allowed"
        assert "serve.allowed_hosts" in r.json()["error"]["message"]


def test_host_allow_list_patterns():
    hosts = HostAllowList.of(["api.example.com", "*.internal.example"])
    assert hosts.allows(b"api.example.com:443") and hosts.allows(b"a.b.internal.example")
    assert not hosts.allows(b"internal.example") and not hosts.allows(b"localhost")
    assert not hosts.allows(None) and not hosts.allows(b"")
    assert HostAllowList.of(["*"]).allows(b"anything")


@pytest.mark.parametrize("ctype, status", [
    (None, 415), ("text/plain", 415), ("application/x-www-form-urlencoded", 415),
    ("multipart/form-data; boundary=x", 415), ("application/json", 200),
    ("Application/JSON; charset=utf-8", 200),
])
async def test_gate_takes_only_json_bodies(ctype, status):
    app = _gate_app()
    headers = {"authorization": f"Bearer {C}", **({"content-type": ctype} if ctype else {})}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as c:
        r = await c.post("/echo", content=b"{}", headers=headers)
    assert r.status_code == status, r.text
    if status == 415:
        assert r.json()["error"]["code"] == "unsupported_media_type"


async def test_gate_refuses_everything_before_the_replica_configured_it():
    app = FastAPI()
    app.add_middleware(Gate)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as c:
        assert (await c.get("/healthz")).status_code == 503


def test_serve_yaml_is_a_valid_serve_config_with_autoscaling():
    schema = load_serve_config()
    app = app_schema(schema)
    assert app.import_path == "serve.app:build"
    opts = deployment_options(app)
    scaling = opts["autoscaling_config"]
    assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] > scaling["min_replicas"]
    assert opts["max_ongoing_requests"] > scaling["target_ongoing_requests"]
    assert opts["max_queued_requests"] > 0  # back-pressure: 503 instead of an endless queue
    assert "runtime_env" not in opts["ray_actor_options"]


def test_serve_spec_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"serve\.max_body_byte: unknown key"):
        parse_config(make_config(tmp_path, serve={"max_body_byte": 5}))  # at load (issue 17)
    cfg = parse_config(make_config(tmp_path, serve={"max_tokens_limit": 1000}))
    assert ServeSpec.from_config(cfg).token_limit(cfg) == 1000
