"""Wire clients: pure build/parse against captured bodies, pre-send checks, secrets, and
end-to-end attempts through the real transport against the loopback simulator."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from actors.clients import Completion, Message, make_client
from actors.clients.anthropic import AnthropicClient
from actors.clients.gemini import GeminiClient
from actors.clients.http import env_proxy
from actors.clients.openai import OpenAIClient
from actors.clients.wire import WireClient
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError
from actors.simulator.server import SimulatorProcess, simulator_base_url

KEY = "sk-test-SECRET123"
CLASSES: dict[str, type[WireClient]] = {
    "anthropic": AnthropicClient,
    "openai": OpenAIClient,
    "gemini": GeminiClient,
}
MODELS = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4-turbo", "gemini": "gemini-2.5-pro"}


def spec(api: str = "openai", **over: Any) -> ProviderSpec:
    fields: dict[str, Any] = dict(
        name=f"p-{api}", api=api, model=MODELS[api], base_url="https://api.example.invalid/v1",
        api_key_env="LLM_ROUTER_TEST_NO_SUCH_KEY", input_cost_per_mtok=2.0,
        output_cost_per_mtok=10.0, max_input_tokens=1000, max_output_tokens=500, timeout_s=5,
        rpm=100, tpm=100_000, max_concurrency=4,
    )  # fmt: skip
    return ProviderSpec(**(fields | over))


def ask(*turns: tuple[str, str], **kw: Any) -> Completion:
    return Completion(messages=[Message(role=r, content=c) for r, c in turns], **kw)  # type: ignore[arg-type]


CHAT = ask(("system", "Be terse."), ("user", "Trend?"), ("assistant", "Up."), ("user", "Sure?"))


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- build --------------------------------------------------------------------------------


def test_build_anthropic() -> None:
    s = spec("anthropic", base_url="https://api.anthropic.com")
    url, headers, body = AnthropicClient.build(s, CHAT.model_copy(update={"temperature": 1.7}), KEY)
    assert url == "https://api.anthropic.com/v1/messages"
    assert headers == {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert body["system"] == "Be terse."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 500  # defaults to the model's limit
    assert body["temperature"] == 1.0  # Anthropic's range ends at 1


def test_build_openai() -> None:
    url, headers, body = OpenAIClient.build(spec(), CHAT.model_copy(update={"max_tokens": 64}), KEY)
    assert url == "https://api.example.invalid/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body == {
        "model": "gpt-4-turbo",
        "messages": [m.model_dump(exclude_none=True) for m in CHAT.messages],
        "max_tokens": 64,
    }


def test_build_gemini() -> None:
    s = spec("gemini", base_url="https://generativelanguage.googleapis.com/v1beta")
    url, headers, body = GeminiClient.build(s, CHAT.model_copy(update={"temperature": 0.2}), KEY)
    assert url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
    )
    assert headers["x-goog-api-key"] == KEY
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"text": "Up."}]
    assert body["generationConfig"] == {"maxOutputTokens": 500, "temperature": 0.2}


@pytest.mark.parametrize("api", ["anthropic", "gemini"])
def test_build_needs_a_turn_besides_system(api: str) -> None:
    with pytest.raises(ProviderError) as exc:
        CLASSES[api].build(spec(api), ask(("system", "only rules")), KEY)
    assert exc.value.error_class is ErrorClass.BAD_REQUEST


@pytest.mark.parametrize("api", list(CLASSES))
def test_limits_checked_in_build(api: str) -> None:
    with pytest.raises(ProviderError) as exc:
        CLASSES[api].build(spec(api), ask(("user", "hi"), max_tokens=501), KEY)
    assert exc.value.error_class is ErrorClass.BAD_REQUEST and "500" in exc.value.message
    with pytest.raises(ProviderError) as exc:
        CLASSES[api].build(spec(api), ask(("user", "x" * 4000)), KEY)  # ~1000 + overhead
    assert exc.value.error_class is ErrorClass.CONTEXT_TOO_LONG and "1000" in exc.value.message
    CLASSES[api].build(spec(api), ask(("user", "x" * 3900)), KEY)  # just fits


# --- parse: success -----------------------------------------------------------------------

ANTHROPIC_OK = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "text", "text": "Long "},
        {"type": "tool_use", "id": "t", "name": "x", "input": {}},
        {"type": "text", "text": "SPY."},
    ],
    "stop_reason": "max_tokens", "stop_sequence": None,
    "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 50},
}  # fmt: skip
OPENAI_OK = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4-turbo",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Long SPY."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 150, "completion_tokens": 20, "total_tokens": 170},
}  # fmt: skip
GEMINI_OK = {
    "candidates": [{"content": {"role": "model", "parts": [
        {"text": "thinking...", "thought": True}, {"text": "Long "}, {"text": "SPY."}]},
        "finishReason": "SAFETY"}],
    "usageMetadata": {"promptTokenCount": 150, "candidatesTokenCount": 8,
                      "thoughtsTokenCount": 12, "totalTokenCount": 170},
    "responseId": "resp-1",
}  # fmt: skip


@pytest.mark.parametrize(
    ("api", "body", "finish", "raw_id"),
    [
        ("anthropic", ANTHROPIC_OK, "length", "msg_01"),
        ("openai", OPENAI_OK, "stop", "chatcmpl-1"),
        ("gemini", GEMINI_OK, "content_filter", "resp-1"),
    ],
)
def test_parse_success(api: str, body: dict, finish: str, raw_id: str) -> None:
    r = CLASSES[api].parse(spec(api), 200, {}, js(body), 0.25)
    assert (r.text, r.input_tokens, r.output_tokens) == ("Long SPY.", 150, 20)
    assert (r.finish_reason, r.raw_id, r.latency_s) == (finish, raw_id, 0.25)
    assert (r.provider, r.model) == (f"p-{api}", MODELS[api])
    assert r.cost_usd == pytest.approx((150 * 2.0 + 20 * 10.0) / 1e6)


def test_parse_validates_with_official_sdk_types() -> None:
    """The captured success bodies are what the vendors' own SDK types accept."""
    import anthropic.types
    import google.genai.types
    import openai.types.chat

    anthropic.types.Message.model_validate(ANTHROPIC_OK)
    openai.types.chat.ChatCompletion.model_validate(OPENAI_OK)
    google.genai.types.GenerateContentResponse.model_validate(GEMINI_OK)


def test_gemini_blocked_prompt_and_thinking_only() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 9},
    }
    r = GeminiClient.parse(spec("gemini"), 200, {}, js(blocked), 0.1)
    assert (r.text, r.finish_reason, r.output_tokens) == ("", "content_filter", 0)
    thinking = {
        "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 9, "thoughtsTokenCount": 500},
    }
    r = GeminiClient.parse(spec("gemini"), 200, {}, js(thinking), 0.1)
    assert (r.text, r.finish_reason, r.output_tokens) == ("", "length", 500)


# --- parse: error statuses ----------------------------------------------------------------


def anthropic_err(kind: str, message: str) -> bytes:
    return js({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})


def openai_err(message: str, kind: str, code: str | None = None) -> bytes:
    return js({"error": {"message": message, "type": kind, "param": None, "code": code}})


def gemini_err(code: int, status: str, message: str, **extra: Any) -> bytes:
    return js({"error": {"code": code, "message": message, "status": status, **extra}})


@pytest.mark.parametrize(
    ("api", "status", "headers", "body", "cls", "retry_after", "words"),
    [
        ("anthropic", 429, {"retry-after": "7"}, anthropic_err("rate_limit_error", "Slow down"),
         ErrorClass.RATE_LIMITED, 7.0, "rate_limit_error: Slow down"),
        ("anthropic", 529, {}, anthropic_err("overloaded_error", "Overloaded"),
         ErrorClass.OVERLOADED, None, "overloaded_error: Overloaded"),
        ("anthropic", 500, {}, anthropic_err("api_error", "Internal server error"),
         ErrorClass.SERVER, None, "api_error"),
        ("anthropic", 401, {}, anthropic_err("authentication_error", "invalid x-api-key"),
         ErrorClass.AUTH, None, "invalid x-api-key"),
        ("anthropic", 400, {}, anthropic_err(
            "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
         ErrorClass.CONTEXT_TOO_LONG, None, "210000"),
        ("openai", 429, {"Retry-After-Ms": "1500", "retry-after": "2"},
         openai_err("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
         ErrorClass.RATE_LIMITED, 1.5, "rate_limit_exceeded: Rate limit reached"),
        ("openai", 400, {}, openai_err(
            "This model's maximum context length is 128000 tokens.", "invalid_request_error",
            "context_length_exceeded"), ErrorClass.CONTEXT_TOO_LONG, None, "128000"),
        ("openai", 400, {}, openai_err("Invalid 'temperature'", "invalid_request_error"),
         ErrorClass.BAD_REQUEST, None, "Invalid 'temperature'"),
        ("openai", 503, {"retry-after": "999"}, openai_err("Service unavailable", "server_error"),
         ErrorClass.OVERLOADED, None, "Service unavailable"),  # > 120 s is ignored
        ("gemini", 429, {"retry-after": "3"}, gemini_err(429, "RESOURCE_EXHAUSTED", "Quota"),
         ErrorClass.RATE_LIMITED, 3.0, "RESOURCE_EXHAUSTED: Quota"),
        ("gemini", 503, {}, gemini_err(503, "UNAVAILABLE", "The model is overloaded."),
         ErrorClass.OVERLOADED, None, "UNAVAILABLE"),
        ("gemini", 400, {}, gemini_err(400, "INVALID_ARGUMENT", "API key not valid.",
                                       details=[{"reason": "API_KEY_INVALID"}]),
         ErrorClass.AUTH, None, "API key not valid"),
        ("openai", 502, {}, b"<html><body>502 Bad Gateway</body></html>",
         ErrorClass.SERVER, None, "502 Bad Gateway"),
    ],
)  # fmt: skip
def test_parse_error_status(
    api: str, status: int, headers: dict, body: bytes, cls: ErrorClass, retry_after, words: str
) -> None:
    with pytest.raises(ProviderError) as exc:
        CLASSES[api].parse(spec(api), status, headers, body, 0.1)
    err = exc.value
    assert (err.error_class, err.status, err.retry_after) == (cls, status, retry_after)
    assert words in err.message and err.provider == f"p-{api}"


def test_error_message_is_trimmed() -> None:
    with pytest.raises(ProviderError) as exc:
        OpenAIClient.parse(spec(), 400, {}, openai_err("x" * 5000, "invalid_request_error"), 0.1)
    assert 250 < len(exc.value.message) <= 330


# --- parse: unusable success bodies -------------------------------------------------------


def _drop(obj: dict, key: str) -> dict:
    return {k: v for k, v in obj.items() if k != key}


@pytest.mark.parametrize(
    ("api", "body", "words"),
    [
        ("openai", b'{"id": "x", "choices": [', "not JSON"),
        ("anthropic", b"", "not JSON"),
        ("gemini", b"[1, 2]", "JSON list"),
        ("anthropic", js(_drop(ANTHROPIC_OK, "usage")), "'usage'"),
        ("openai", js(_drop(OPENAI_OK, "usage")), "'usage'"),
        ("gemini", js(_drop(GEMINI_OK, "usageMetadata")), "'usageMetadata'"),
        ("openai", js(OPENAI_OK | {"choices": []}), "'choices' is empty"),
        ("gemini", js(GEMINI_OK | {"candidates": []}), "'candidates'"),
        ("anthropic", js(ANTHROPIC_OK | {"content": "text"}), "'content'"),
        ("openai", js(OPENAI_OK | {"usage": {"prompt_tokens": "150", "completion_tokens": 2}}),
         "usage.prompt_tokens"),
        ("anthropic", js(ANTHROPIC_OK | {"usage": {"input_tokens": -1, "output_tokens": 2}}),
         "negative"),
    ],
)  # fmt: skip
def test_parse_invalid_body(api: str, body: bytes, words: str) -> None:
    with pytest.raises(ProviderError) as exc:
        CLASSES[api].parse(spec(api), 200, {}, body, 0.1)
    assert exc.value.error_class is ErrorClass.INVALID_RESPONSE
    assert words in exc.value.message


# --- registry, secrets and pre-send checks (no network: a counting MockTransport) ---------


class Recorder:
    """An httpx MockTransport that answers from a function and remembers every request."""

    def __init__(self, answer) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)


def openai_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=js(OPENAI_OK))


def test_make_client_picks_class_and_rejects_unknown_api() -> None:
    for api, cls in CLASSES.items():
        assert type(make_client(spec(api), api_key=KEY)) is cls
    with pytest.raises(ValueError, match="unknown api 'bogus'"):
        make_client(spec().model_copy(update={"api": "bogus"}))


def test_env_proxy_is_used_unless_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    proxy = env_proxy("https://api.openai.com/v1")
    assert proxy is not None and proxy.url == httpx.URL("http://proxy.invalid:3128")
    assert env_proxy("http://127.0.0.1:8000/v1") is None


async def test_send_success_and_wire_shape() -> None:
    rec = Recorder(openai_ok)
    client = make_client(spec(), api_key=KEY, transport=rec.transport)
    result = await client.send(CHAT)
    await client.aclose()
    assert result.text == "Long SPY." and result.latency_s > 0
    (req,) = rec.requests
    assert str(req.url) == "https://api.example.invalid/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(req.content)["max_tokens"] == 500


async def test_key_never_in_repr_str_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ROUTER_TEST_KEY", KEY)
    s = spec("anthropic", api_key_env="LLM_ROUTER_TEST_KEY")

    def echo(request: httpx.Request) -> httpx.Response:  # a server quoting the key back
        return httpx.Response(401, content=anthropic_err("authentication_error", f"bad key {KEY}"))

    client = make_client(s, transport=Recorder(echo).transport)
    for text in (repr(client), str(client), repr(vars(client)), repr(client._key)):
        assert KEY not in text
    assert "provider='p-anthropic'" in repr(client) and "claude-sonnet-4-5" in repr(client)
    with pytest.raises(ProviderError) as exc:
        await client.send(CHAT)
    assert exc.value.error_class is ErrorClass.AUTH
    assert KEY not in str(exc.value) and "bad key ***" in exc.value.message

    def leak(request: httpx.Request) -> httpx.Response:  # an exception text carrying headers
        raise httpx.ConnectError(f"failed sending {dict(request.headers)}", request=request)

    client = make_client(s, transport=Recorder(leak).transport)
    with pytest.raises(ProviderError) as exc:
        await client.send(CHAT)
    assert exc.value.error_class is ErrorClass.CONNECTION
    assert KEY not in str(exc.value) and KEY not in repr(exc.value.args)


@pytest.mark.parametrize(
    ("completion", "cls"),
    [
        (ask(("user", "x" * 8000)), ErrorClass.CONTEXT_TOO_LONG),
        (ask(("user", "hi"), max_tokens=4096), ErrorClass.BAD_REQUEST),
    ],
)
async def test_rejected_before_sending(completion: Completion, cls: ErrorClass) -> None:
    rec = Recorder(openai_ok)
    client = make_client(spec(), api_key=KEY, transport=rec.transport)
    with pytest.raises(ProviderError) as exc:
        await client.send(completion)
    assert exc.value.error_class is cls and rec.requests == []


async def test_missing_key_fails_without_a_request_and_sim_gets_placeholder() -> None:
    rec = Recorder(openai_ok)
    client = make_client(spec(), transport=rec.transport)  # env var unset, real host
    with pytest.raises(ProviderError) as exc:
        await client.send(CHAT)
    assert exc.value.error_class is ErrorClass.AUTH
    assert "LLM_ROUTER_TEST_NO_SUCH_KEY" in exc.value.message
    assert rec.requests == []
    client = make_client(spec(), base_url="http://127.0.0.1:9/v1/", transport=rec.transport)
    await client.send(CHAT)
    assert rec.requests[0].headers["authorization"] == "Bearer sim"
    assert str(rec.requests[0].url) == "http://127.0.0.1:9/v1/chat/completions"


# --- end to end: real transport, loopback simulator ---------------------------------------


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0, seed=7) as s:
        yield s


def sim_client(sim: SimulatorProcess, api: str, **over: Any) -> WireClient:
    s = spec(api, **over)
    return make_client(s, base_url=simulator_base_url(api, sim.url))


@pytest.mark.parametrize("api", list(CLASSES))
async def test_simulator_round_trip(sim: SimulatorProcess, api: str) -> None:
    client = sim_client(sim, api)
    try:
        results = await asyncio.gather(*(client.send(CHAT) for _ in range(12)))  # > pool size
    finally:
        await client.aclose()
    for r in results:
        assert r.text and r.input_tokens > 0 and 0 < r.output_tokens <= 500
        assert r.finish_reason in {"stop", "length"} and r.cost_usd > 0


@pytest.mark.parametrize(
    ("api", "fault", "cls"),
    [
        ("anthropic", {"overloaded": 1.0}, ErrorClass.OVERLOADED),
        ("gemini", {"rate_limit": 1.0, "retry_after_s": 2.5}, ErrorClass.RATE_LIMITED),
        ("openai", {"malformed": 1.0, "malformed_kind": "no_usage"}, ErrorClass.INVALID_RESPONSE),
        ("openai", {"malformed": 1.0, "malformed_kind": "not_json"}, ErrorClass.INVALID_RESPONSE),
        ("openai", {"timeout": 1.0, "hang_s": 3.0}, ErrorClass.TIMEOUT),
    ],
)
async def test_simulator_faults(
    sim: SimulatorProcess, api: str, fault: dict, cls: ErrorClass
) -> None:
    sim.set_profile(MODELS[api], **fault)
    client = sim_client(sim, api, timeout_s=0.3)
    try:
        with pytest.raises(ProviderError) as exc:
            await client.send(CHAT)
    finally:
        sim.reset_profile(MODELS[api])
        await client.aclose()
    assert exc.value.error_class is cls
    if cls is ErrorClass.RATE_LIMITED:
        assert exc.value.retry_after == 2.5


async def test_connection_refused_is_connection() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(spec(), base_url=f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(ProviderError) as exc:
            await client.send(CHAT)
    finally:
        await client.aclose()
    assert exc.value.error_class is ErrorClass.CONNECTION  # not TIMEOUT, despite httpx-aiohttp
