"""OpenAI-compatible chat completions (`POST /chat/completions`): OpenAI, Mistral, Together, Groq."""

from __future__ import annotations

from typing import Any

from actors.clients.base import Completion, Result
from actors.clients.wire import BadBody, Request, WireClient, check_limits, count, make_result, need
from actors.config import ProviderSpec

FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


def _text(content: Any) -> str:
    """`content` is a string, null (refusals, tool calls) or, on some servers, a list of parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    raise BadBody(f"field 'choices[0].message.content' is a {type(content).__name__}")


class OpenAIClient(WireClient):
    api = "openai"

    @staticmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str) -> Request:
        max_tokens = check_limits(spec, completion)
        body: dict[str, Any] = {
            "model": spec.model,
            "messages": [{"role": m.role, "content": m.content} for m in completion.messages],
            "max_tokens": max_tokens,
        }
        if completion.temperature is not None:
            body["temperature"] = completion.temperature
        headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
        return f"{spec.base_url}/chat/completions", headers, body

    @staticmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        choices = need(data, "choices", list)
        if not choices:
            raise BadBody("'choices' is empty")
        message = need(choices[0], "message", dict, "choices[0]")
        finish = choices[0].get("finish_reason")
        finish = FINISH_REASONS.get(finish, "other") if isinstance(finish, str) else "other"
        usage = need(data, "usage", dict)
        return make_result(
            spec,
            text=_text(message.get("content")),
            input_tokens=count(usage, "prompt_tokens", "usage"),
            output_tokens=count(usage, "completion_tokens", "usage"),
            finish_reason=finish,
            latency_s=latency_s,
            raw_id=data.get("id", ""),
        )
