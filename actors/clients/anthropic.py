"""Anthropic Messages API (`POST /v1/messages`)."""

from __future__ import annotations

from typing import Any

from actors.clients.base import Completion, Result
from actors.clients.wire import (
    BadBody,
    Request,
    WireClient,
    check_limits,
    count,
    make_result,
    need,
)
from actors.config import ProviderSpec
from actors.errors import ErrorClass, ProviderError

VERSION = "2023-06-01"
#: Anthropic's temperature range is 0..1, the callers' (OpenAI's) 0..2.
MAX_TEMPERATURE = 1.0
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


class AnthropicClient(WireClient):
    api = "anthropic"

    @staticmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str) -> Request:
        """System messages become the top-level `system`; temperature is capped at 1."""
        max_tokens = check_limits(spec, completion)
        system = [m.content for m in completion.messages if m.role == "system"]
        messages = [
            {"role": m.role, "content": m.content}
            for m in completion.messages
            if m.role != "system"
        ]
        if not messages:
            raise ProviderError(
                ErrorClass.BAD_REQUEST,
                "needs at least one user or assistant message",
                provider=spec.name,
            )
        body: dict[str, Any] = {"model": spec.model, "max_tokens": max_tokens, "messages": messages}
        if system:
            body["system"] = "\n\n".join(system)
        if completion.temperature is not None:
            body["temperature"] = min(completion.temperature, MAX_TEMPERATURE)
        headers = {
            "x-api-key": api_key,
            "anthropic-version": VERSION,
            "content-type": "application/json",
        }
        return f"{spec.base_url}/v1/messages", headers, body

    @staticmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        """Text is every `text` block joined; cache reads and writes count as input."""
        blocks = need(data, "content", list)
        text = "".join(
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
        usage = need(data, "usage", dict)
        input_tokens = (
            count(usage, "input_tokens", "usage")
            + count(usage, "cache_read_input_tokens", "usage", default=0)
            + count(usage, "cache_creation_input_tokens", "usage", default=0)
        )
        stop = data.get("stop_reason")
        if stop is not None and not isinstance(stop, str):
            raise BadBody("field 'stop_reason' has unexpected type")
        return make_result(
            spec,
            text=text,
            input_tokens=input_tokens,
            output_tokens=count(usage, "output_tokens", "usage"),
            finish_reason=STOP_REASONS.get(stop or "", "other"),
            latency_s=latency_s,
            raw_id=data.get("id", ""),
        )
