"""Gemini `generateContent` (`POST /models/{model}:generateContent`)."""

from __future__ import annotations

from typing import Any

from actors.clients.base import Completion, Result
from actors.clients.wire import BadBody, Request, WireClient, check_limits, count, make_result, need
from actors.config import ProviderSpec
from actors.errors import ErrorClass, ProviderError

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


class GeminiClient(WireClient):
    api = "gemini"

    @staticmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str) -> Request:
        """System messages become `systemInstruction`; the assistant is called `model`."""
        max_tokens = check_limits(spec, completion)
        system = [m.content for m in completion.messages if m.role == "system"]
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
            for m in completion.messages
            if m.role != "system"
        ]
        if not contents:
            raise ProviderError(
                ErrorClass.BAD_REQUEST,
                "needs at least one user or assistant message",
                provider=spec.name,
            )
        config: dict[str, Any] = {"maxOutputTokens": max_tokens}
        if completion.temperature is not None:
            config["temperature"] = completion.temperature
        body: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        model = spec.model.removeprefix("models/")
        headers = {"x-goog-api-key": api_key, "content-type": "application/json"}
        return f"{spec.base_url}/models/{model}:generateContent", headers, body

    @staticmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        """Gemini omits zero counts; thinking tokens are billed as output, so they count."""
        usage = need(data, "usageMetadata", dict)
        input_tokens = count(usage, "promptTokenCount", "usageMetadata")
        output_tokens = count(usage, "candidatesTokenCount", "usageMetadata", default=0) + count(
            usage, "thoughtsTokenCount", "usageMetadata", default=0
        )
        candidates = data.get("candidates") or []
        if not isinstance(candidates, list):
            raise BadBody("field 'candidates' has unexpected type")
        if not candidates:
            feedback = data.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                text, finish = "", "content_filter"  # the prompt itself was blocked
            else:
                raise BadBody("'candidates' is missing or empty")
        else:
            candidate = candidates[0]
            if not isinstance(candidate, dict):
                raise BadBody("field 'candidates[0]' has unexpected type")
            reason = candidate.get("finishReason")
            content = candidate.get("content") or {}
            parts = content.get("parts") if isinstance(content, dict) else None
            if not parts and not reason:
                raise BadBody("'candidates[0]' has neither content nor finishReason")
            text = "".join(
                p["text"]
                for p in parts or []
                if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
            )
            finish = FINISH_REASONS.get(reason, "other") if isinstance(reason, str) else "other"
        return make_result(
            spec,
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish,
            latency_s=latency_s,
            raw_id=data.get("responseId", ""),
        )
