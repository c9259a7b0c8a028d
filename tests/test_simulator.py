"""The provider simulator: pure profile/answer/quota logic, then the real server in a subprocess
checked against the official SDKs' types and clients."""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Literal

import anthropic
import httpx
import openai
import pytest
from anthropic.types import Message
from anthropic.types.shared import ErrorResponse
from google import genai
from google.genai import types as gtypes
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

from actors.clients.schema import schema_error
from actors.simulator import SimulatorProcess, simulator_base_url
from actors.simulator.answers import answer, count_tokens, truncate
from actors.simulator.profiles import DEFAULT_PROFILES, FAULTS, Profile, build_profiles
from actors.simulator.quota import Quota
from actors.simulator.schemas import instance
from actors.simulator.wire import error_body
from prompts.outputs import RiskAssessment, TradeSignal

PROMPT = "Analyse SPY. timeframe: 4h, regime: bull, close: 500.0. Answer as JSON."
SIGNAL_KEYS = {"direction", "confidence", "entry", "stop", "take_profit", "horizon", "rationale"}

# ---------------------------------------------------------------- pure logic


def test_profile_rejects_fault_mix_above_one() -> None:
    with pytest.raises(ValueError, match="sum to"):
        Profile(rate_limit=0.6, server_error=0.5)


def test_pick_fault_follows_cumulative_probabilities() -> None:
    p = Profile(rate_limit=0.2, timeout=0.3)
    assert p.pick_fault(0.1) == "rate_limit"
    assert p.pick_fault(0.25) == "timeout"
    assert p.pick_fault(0.6) is None
    assert not Profile().faulty and p.faulty


def test_build_profiles_names_model_and_key() -> None:
    with pytest.raises(ValueError, match=r"profiles\.gpt-4-turbo\.base_ms"):
        build_profiles({"gpt-4-turbo": {"base_ms": -1}})
    with pytest.raises(ValueError, match=r"profiles\.x\.nonsense"):
        build_profiles({"x": {"nonsense": 1}})
    out = build_profiles({"gpt-4-turbo": {"rpm": 5}})
    assert out["gpt-4-turbo"].rpm == 5
    assert out["gpt-4-turbo"].base_ms == DEFAULT_PROFILES["gpt-4-turbo"].base_ms


def test_shipped_models_differ_and_are_fault_free() -> None:
    shipped = [m for m in DEFAULT_PROFILES if m != "default"]
    assert len(shipped) == 5 and "meta-llama/Llama-3.3-70B-Instruct-Turbo" in shipped
    assert all(not DEFAULT_PROFILES[m].faulty for m in shipped)
    assert len({DEFAULT_PROFILES[m].base_ms for m in shipped}) == 5


def test_tokens_and_truncation() -> None:
    assert count_tokens("") == 0 and count_tokens("abcde") == 2
    assert truncate("x" * 40, None) == ("x" * 40, 10, False)
    assert truncate("x" * 40, 3) == ("x" * 12, 3, True)


def test_regime_leans_direction_and_seed_reproduces() -> None:
    p = Profile(fence_prob=0.0)

    def directions(prompt: str) -> list[str]:
        rng = random.Random(7)
        return [json.loads(answer(prompt, p, rng))["direction"] for _ in range(200)]

    bull, bear = directions("regime: bull"), directions("regime: bear")
    assert bull.count("long") > 140 and bear.count("short") > 140
    assert directions("regime: bull") == bull


def test_signal_shape_uses_prompt_price_and_timeframe() -> None:
    rng = random.Random(3)
    for _ in range(20):
        obj = json.loads(answer(PROMPT, Profile(), rng))
        assert set(obj) == SIGNAL_KEYS and 0 <= obj["confidence"] <= 1
        assert obj["horizon"] == "4h"
        if obj["direction"] == "long":
            assert obj["stop"] < obj["entry"] == 500.0 < obj["take_profit"]


def test_risk_assessment_answer() -> None:
    obj = json.loads(answer("Task: RiskAssessment. close: 100", Profile(), random.Random(1)))
    assert set(obj) == {"risk_score", "max_position_size", "stop_distance", "warnings"}
    assert 0 <= obj["risk_score"] <= 1 and obj["max_position_size"] >= 0
    assert obj["stop_distance"] >= 0 and all(isinstance(w, str) for w in obj["warnings"])


def test_fence_style() -> None:
    text = answer(PROMPT, Profile(fence_prob=1.0), random.Random(1))
    assert text.startswith("```json\n") and text.endswith("\n```")
    json.loads(text[8:-4])


def test_quota_rpm_and_tpm_sliding_window() -> None:
    q = Quota()
    assert q.admit(0.0, 10, rpm=2, tpm=None) is None
    assert q.admit(1.0, 10, rpm=2, tpm=None) is None
    assert q.admit(2.0, 10, rpm=2, tpm=None) == pytest.approx(58.0)
    assert q.admit(60.5, 10, rpm=2, tpm=None) is None  # first one expired
    q = Quota()
    assert q.admit(0.0, 60, rpm=None, tpm=100) is None
    assert q.admit(10.0, 30, rpm=None, tpm=100) is None
    assert q.admit(20.0, 50, rpm=None, tpm=100) == pytest.approx(40.0)
    assert q.admit(20.0, 500, rpm=None, tpm=100) == 60.0  # can never fit


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503, 504, 529])
def test_error_bodies_match_vendor_shapes(status: int) -> None:
    ErrorResponse.model_validate(error_body("anthropic", status, "m", "r1"))
    err = error_body("openai", status, "m", "r1")["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if status != 529:  # only Anthropic uses 529
        g = error_body("gemini", status, "m", "r1")["error"]
        assert g["code"] == status and g["status"] != "UNKNOWN"


def test_simulator_base_url() -> None:
    assert simulator_base_url("anthropic", "http://h:1/") == "http://h:1"
    assert simulator_base_url("openai", "http://h:1") == "http://h:1/v1"
    assert simulator_base_url("gemini", "http://h:1") == "http://h:1/v1beta"
    with pytest.raises(ValueError):
        simulator_base_url("cohere", "http://h:1")


class _Leg(BaseModel):
    side: Literal["buy", "sell"]
    qty: int = Field(ge=1, le=10)
    venue: str | None = None


class _Order(BaseModel):
    legs: list[_Leg] = Field(min_length=2, max_length=3)
    tif: Literal["day", "gtc"] = "day"
    limit: float = Field(gt=0, lt=5, multiple_of=0.25)
    when: str = Field(json_schema_extra={"format": "date-time"})
    note: str = Field(min_length=12, max_length=20)


@pytest.mark.parametrize("model", [TradeSignal, RiskAssessment, _Order])
def test_schema_instances_are_valid_and_keep_the_natural_answer(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(20):
        value = instance(schema, random.Random(seed))
        assert schema_error(schema, value) is None, value
    natural = json.loads(answer(PROMPT, DEFAULT_PROFILES["gpt-4-turbo"], random.Random(3)))
    if model is TradeSignal:  # where the schema agrees, the model's own call is kept
        kept = instance(schema, random.Random(0), natural)
        assert kept["direction"] == natural["direction"] and kept["rationale"] == natural["rationale"]


def test_gemini_upper_case_schemas_are_understood() -> None:
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "minimum": 3}},
              "required": ["n"]}
    assert instance(schema, random.Random(1))["n"] >= 3


# ---------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0, seed=1) as s:
        yield s


@pytest.fixture(scope="module")
def http(sim: SimulatorProcess):
    with httpx.Client(base_url=sim.url, timeout=10, trust_env=False) as c:
        yield c


def _req(api: str, model: str, prompt: str = PROMPT, max_tokens: int = 512, key: bool = True):
    """(path, headers, json) for one request in the wire format of `api`."""
    msgs = [{"role": "user", "content": prompt}]
    if api == "anthropic":
        h = {"x-api-key": "k"} if key else {}
        body = {"model": model, "max_tokens": max_tokens, "messages": msgs, "system": "Be terse."}
        return "/v1/messages", h, body
    if api == "openai":
        h = {"authorization": "Bearer k"} if key else {}
        return (
            "/v1/chat/completions",
            h,
            {"model": model, "messages": msgs, "max_tokens": max_tokens},
        )
    h = {"x-goog-api-key": "k"} if key else {}
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {"maxOutputTokens": max_tokens, "temperature": 0.2},
    }
    return f"/v1beta/models/{model}:generateContent", h, body


def _post(http: httpx.Client, api: str, model: str, **kw) -> httpx.Response:
    path, headers, body = _req(api, model, **kw)
    return http.post(path, headers=headers, json=body)


def _fresh(prefix: str = "m") -> str:
    """A model name of its own, so per-model stats and profiles don't leak between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _text(api: str, body: dict) -> str:
    if api == "anthropic":
        return body["content"][0]["text"]
    if api == "openai":
        return body["choices"][0]["message"]["content"]
    return body["candidates"][0]["content"]["parts"][0]["text"]


def test_anthropic_response_is_a_valid_message(sim, http) -> None:
    r = _post(http, "anthropic", "claude-sonnet-4-5")
    assert r.status_code == 200
    m = Message.model_validate(r.json())
    assert m.stop_reason == "end_turn" and m.usage.input_tokens > 0
    assert set(json.loads(m.content[0].text.strip("`").removeprefix("json"))) == SIGNAL_KEYS
    bearer = http.post(
        "/v1/messages", headers={"authorization": "Bearer k"}, json=_req("anthropic", "x")[2]
    )
    assert bearer.status_code == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_openai_response_is_a_valid_chat_completion(http, path: str) -> None:
    _, headers, body = _req("openai", "gpt-4-turbo")
    c = ChatCompletion.model_validate(http.post(path, headers=headers, json=body).json())
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_gemini_response_is_a_valid_generate_content_response(http) -> None:
    r = _post(http, "gemini", "gemini-2.5-pro")
    g = gtypes.GenerateContentResponse.model_validate(r.json())
    assert g.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert g.usage_metadata.total_token_count > g.usage_metadata.prompt_token_count > 0
    assert g.model_version == "gemini-2.5-pro"


def test_official_sdk_clients_end_to_end(sim) -> None:
    oa = openai.OpenAI(base_url=simulator_base_url("openai", sim.url), api_key="x", max_retries=0)
    c = oa.chat.completions.create(
        model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
        messages=[{"role": "user", "content": "RiskAssessment for SPY, close: 10"}],
        max_tokens=300,
    )
    assert "risk_score" in c.choices[0].message.content
    an = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
    m = an.messages.create(
        model="claude-sonnet-4-5", max_tokens=300, messages=[{"role": "user", "content": PROMPT}]
    )
    assert m.usage.output_tokens > 0 and "direction" in m.content[0].text
    gc = genai.Client(
        api_key="x", http_options=gtypes.HttpOptions(base_url=sim.url, api_version="v1beta")
    )
    g = gc.models.generate_content(model="gemini-2.5-pro", contents=PROMPT)
    assert "direction" in g.text
    with pytest.raises(openai.RateLimitError):
        model = _fresh("sdk")
        sim.set_profile(model, rate_limit=1.0, retry_after_s=0)
        oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("api", ["anthropic", "openai", "gemini"])
def test_missing_auth_is_401_and_bad_json_is_400(http, api: str) -> None:
    r = _post(http, api, "gpt-4-turbo", key=False)
    assert r.status_code == 401
    path, headers, _ = _req(api, "gemini-2.5-pro")
    bad = http.post(path, headers=headers, content=b"{not json")
    missing = http.post(path, headers=headers, json={"model": "gpt-4-turbo"})
    assert bad.status_code == missing.status_code == 400
    if api == "anthropic":
        assert ErrorResponse.model_validate(r.json()).error.type == "authentication_error"
        assert ErrorResponse.model_validate(bad.json()).error.type == "invalid_request_error"
    elif api == "openai":
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert bad.json()["error"]["type"] == "invalid_request_error"
    else:
        assert r.json()["error"]["status"] == "UNAUTHENTICATED"
        assert missing.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("api", "reason"),
    [("anthropic", "max_tokens"), ("openai", "length"), ("gemini", "MAX_TOKENS")],
)
def test_max_tokens_truncates(http, api: str, reason: str) -> None:
    body = _post(http, api, "gpt-4-turbo", max_tokens=5).json()
    stop = {
        "anthropic": lambda b: b["stop_reason"],
        "openai": lambda b: b["choices"][0]["finish_reason"],
        "gemini": lambda b: b["candidates"][0]["finishReason"],
    }[api](body)
    assert stop == reason and len(_text(api, body)) <= 20


def test_risk_assessment_prompt_answers_risk_json(http) -> None:
    body = _post(http, "openai", "open-mixtral-8x7b", prompt="RiskAssessment: SPY close: 50").json()
    text = _text("openai", body).removeprefix("```json").removesuffix("```")
    assert set(json.loads(text)) == {"risk_score", "max_position_size", "stop_distance", "warnings"}


# status a fault gives, per api
_FAULT_STATUS = {
    "rate_limit": {"anthropic": 429, "openai": 429, "gemini": 429},
    "server_error": {"anthropic": 500, "openai": 500, "gemini": 500},
    "overloaded": {"anthropic": 529, "openai": 503, "gemini": 503},
    "malformed": {"anthropic": 200, "openai": 200, "gemini": 200},
    "invalid_output": {"anthropic": 200, "openai": 200, "gemini": 200},
    "stream_error": {"anthropic": 529, "openai": 503, "gemini": 503},  # not streamed
}


def test_fault_table_covers_every_fault_kind() -> None:
    assert set(_FAULT_STATUS) | {"timeout", "cut"} == set(FAULTS)  # those have their own tests


@pytest.mark.parametrize("fault", sorted(_FAULT_STATUS))
@pytest.mark.parametrize("api", ["anthropic", "openai", "gemini"])
def test_injected_faults(sim, http, api: str, fault: str) -> None:
    model = _fresh(fault)
    extra = {"malformed_kind": "no_usage"} if fault == "malformed" else {}
    sim.set_profile(model, **{fault: 1.0, "retry_after_s": 2.5}, **extra)
    r = _post(http, api, model)
    assert r.status_code == _FAULT_STATUS[fault][api]
    if fault == "rate_limit":
        assert r.headers["retry-after"] == "3" and r.headers["retry-after-ms"] == "2500"
    if r.status_code >= 400 and api == "anthropic":
        ErrorResponse.model_validate(r.json())
    if r.status_code >= 400 and api == "gemini":
        assert r.json()["error"]["code"] == r.status_code
    if fault == "malformed":
        assert "usage" not in r.json() and "usageMetadata" not in r.json()
    if fault == "invalid_output":
        text = _text(api, r.json())
        assert "{" not in text and len(text) > 20
    assert getattr(sim.stats().models[model], fault) == 1
    sim.reset_profile(model)
    assert _post(http, api, model).status_code == 200


@pytest.mark.parametrize("kind", ["not_json", "truncated"])
def test_malformed_bodies_do_not_parse(sim, http, kind: str) -> None:
    model = _fresh("mal")
    sim.set_profile(model, malformed=1.0, malformed_kind=kind)
    r = _post(http, "openai", model)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_timeout_fault_hangs_then_504(sim, http) -> None:
    model = _fresh("slow")
    sim.set_profile(model, timeout=1.0, hang_s=0.3)
    t0 = time.monotonic()
    r = _post(http, "anthropic", model)
    assert r.status_code == 504 and time.monotonic() - t0 >= 0.3
    assert ErrorResponse.model_validate(r.json()).error.type == "timeout_error"
    path, headers, body = _req("openai", model)
    with pytest.raises(httpx.ReadTimeout):
        http.post(path, headers=headers, json=body, timeout=0.1)
    assert sim.stats().models[model].timeout == 2


@pytest.mark.parametrize("api", ["anthropic", "openai", "gemini"])
def test_cut_fault_drops_the_connection_mid_body(sim, http, api: str) -> None:
    model = _fresh("cut")
    sim.set_profile(model, cut=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        _post(http, api, model)
    assert sim.stats().models[model].cut == 1
    assert http.get("/_sim/health").status_code == 200  # the server itself is fine


def test_down_model_gets_503_on_every_api(sim, http) -> None:
    model = _fresh("down")
    sim.set_profile(model, down=True)
    assert [_post(http, api, model).status_code for api in ("anthropic", "openai", "gemini")] == [
        503
    ] * 3
    assert sim.stats().models[model].down == 3


def test_rpm_limit_is_429_counted_separately(sim, http) -> None:
    model = _fresh("rpm")
    sim.set_profile(model, rpm=2)
    codes = [_post(http, "openai", model).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = _post(http, "openai", model)
    assert 55 <= float(r.headers["retry-after-ms"]) / 1000 <= 60
    s = sim.stats().models[model]
    assert (s.ok, s.rate_limited_by_limit, s.rate_limit, s.requests) == (2, 2, 0, 4)


def test_tpm_limit(sim, http) -> None:
    model = _fresh("tpm")
    sim.set_profile(model, tpm=150)
    codes = [_post(http, "gemini", model).status_code for _ in range(3)]
    assert codes[0] == 200 and codes[-1] == 429
    assert sim.stats().models[model].rate_limited_by_limit >= 1


def test_stats_count_and_reset(sim, http) -> None:
    model = _fresh("count")
    for api in ("anthropic", "openai", "gemini", "openai"):
        assert _post(http, api, model).status_code == 200
    s = sim.stats()
    assert s.models[model].requests == s.models[model].ok == 4
    assert s.totals.requests >= 4
    sim.reset_stats()
    assert sim.stats().totals.requests == 0


def test_profile_put_with_slash_in_model_and_validation(sim, http) -> None:
    model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    try:
        p = sim.set_profile(model, fence_prob=1.0)
        assert p.fence_prob == 1.0 and p.base_ms == DEFAULT_PROFILES[model].base_ms
        assert sim.profiles_in_force()[model].fence_prob == 1.0
        assert _text("openai", _post(http, "openai", model).json()).startswith("```json")
    finally:
        sim.reset_profile(model)
    assert sim.profiles_in_force()[model] == DEFAULT_PROFILES[model]
    with pytest.raises(ValueError, match="sum to"):
        sim.set_profile(model, rate_limit=0.8, timeout=0.8)
    with pytest.raises(ValueError, match="Extra inputs"):
        sim.set_profile(model, wobble=1)
    assert http.get("/nowhere").status_code == 404


def test_process_lifecycle_leaves_no_orphans(tmp_path) -> None:
    with pytest.raises(RuntimeError):
        with SimulatorProcess(latency_scale=0, seed=2) as s:
            proc = s._proc
            assert s.stats().totals.requests == 0
            raise RuntimeError("boom")
    assert proc.poll() is not None
    bad = tmp_path / "p.yaml"
    bad.write_text("gpt-4-turbo: {base_ms: -5}\n")
    with pytest.raises(RuntimeError, match="exited with code 2"):
        SimulatorProcess(profiles=bad).start()


@pytest.mark.parametrize("api", ["openai", "gemini"])
def test_a_repeated_long_system_prompt_is_a_cache_read(sim, http, api: str) -> None:
    model = _fresh("cache")
    sim.set_profile(model, cache_min_tokens=100)
    system = f"Rules {uuid.uuid4()}. " * 40  # ~ 450 tokens, new to the cache
    if api == "openai":
        path, headers = "/v1/chat/completions", {"authorization": "Bearer k"}
        body = {"model": model, "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": PROMPT}]}
    else:
        path, headers = f"/v1beta/models/{model}:generateContent", {"x-goog-api-key": "k"}
        body = {"systemInstruction": {"parts": [{"text": system}]},
                "contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    first, again = (http.post(path, headers=headers, json=body).json() for _ in range(2))
    if api == "openai":
        details = [ChatCompletion.model_validate(b).usage.prompt_tokens_details
                   for b in (first, again)]
        cached = [d.cached_tokens if d else None for d in details]
    else:
        cached = [gtypes.GenerateContentResponse.model_validate(b).usage_metadata
                  .cached_content_token_count for b in (first, again)]
    assert cached[0] in (0, None) and cached[1] == count_tokens(system)
