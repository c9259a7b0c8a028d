"""The three wire formats as a server speaks them: parse requests, render answers and errors.

This is the server-side mirror of ``actors/clients/``; bodies follow PROVIDERS.md and are
checked in the tests against the official SDKs' own response types.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

Api = Literal["anthropic", "openai", "gemini"]


class WireError(ValueError):
    """The request body is not what this API accepts (becomes a 400)."""


@dataclass(slots=True)
class Ask:
    """One parsed request: what the simulator needs whatever the wire format."""

    model: str
    prompt: str
    max_tokens: int | None


# ---- requests (pydantic validates and parses the JSON in one pass) ----


class _Part(BaseModel):
    text: str = ""


class _Block(BaseModel):
    type: str = "text"
    text: str = ""


class _AnthropicMessage(BaseModel):
    role: str
    content: str | list[_Block]


class _AnthropicRequest(BaseModel):
    model: str = Field(min_length=1)
    max_tokens: int = Field(gt=0)
    messages: list[_AnthropicMessage] = Field(min_length=1)
    system: str | list[_Block] | None = None
    temperature: float | None = Field(None, ge=0, le=1)


class _OpenAIMessage(BaseModel):
    role: str
    content: str | list[_Block] | None = None


class _OpenAIRequest(BaseModel):
    model: str = Field(min_length=1)
    messages: list[_OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)


class _Content(BaseModel):
    role: str | None = None
    parts: list[_Part] = Field(min_length=1)


class _GenerationConfig(BaseModel):
    maxOutputTokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)


class _GeminiRequest(BaseModel):
    contents: list[_Content] = Field(min_length=1)
    systemInstruction: _Content | None = None
    generationConfig: _GenerationConfig | None = None


def _text(content: str | list[_Block] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(b.text for b in content)


def parse(api: Api, body: bytes, path_model: str | None = None) -> Ask:
    """Validate a request body; raise WireError with a short reason."""
    try:
        if api == "anthropic":
            a = _AnthropicRequest.model_validate_json(body)
            texts = [_text(a.system)] if a.system else []
            texts += [_text(m.content) for m in a.messages]
            return Ask(a.model, "\n".join(texts), a.max_tokens)
        if api == "openai":
            o = _OpenAIRequest.model_validate_json(body)
            return Ask(
                o.model,
                "\n".join(_text(m.content) for m in o.messages),
                o.max_completion_tokens or o.max_tokens,
            )
        g = _GeminiRequest.model_validate_json(body)
        contents = ([g.systemInstruction] if g.systemInstruction else []) + g.contents
        cap = g.generationConfig.maxOutputTokens if g.generationConfig else None
        return Ask(path_model or "", "\n".join(p.text for c in contents for p in c.parts), cap)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "body"
        raise WireError(f"{where}: {err['msg']}") from None


def authorized(api: Api, headers: Mapping[str, str], query: str = "") -> bool:
    """Any non-empty key counts; the simulator only checks that the client sends one."""
    bearer = headers.get("authorization", "")
    has_bearer = bearer.startswith("Bearer ") and len(bearer) > 7
    if api == "anthropic":
        return bool(headers.get("x-api-key")) or has_bearer
    if api == "openai":
        return has_bearer
    return bool(headers.get("x-goog-api-key")) or "key=" in query


# ---- answers ----


def ok_body(
    api: Api, model: str, text: str, in_tok: int, out_tok: int, truncated: bool, rid: str
) -> dict[str, Any]:
    """A successful response body, as the vendor would send it."""
    if api == "anthropic":
        return {
            "id": f"msg_{rid}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": in_tok, "output_tokens": out_tok},
        }
    if api == "openai":
        return {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if truncated else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": in_tok,
                "completion_tokens": out_tok,
                "total_tokens": in_tok + out_tok,
            },
        }
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "MAX_TOKENS" if truncated else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": in_tok,
            "candidatesTokenCount": out_tok,
            "totalTokenCount": in_tok + out_tok,
        },
        "modelVersion": model,
        "responseId": rid,
    }


#: Key of the usage block, which the ``malformed`` fault sometimes drops.
USAGE_KEY: dict[str, str] = {"anthropic": "usage", "openai": "usage", "gemini": "usageMetadata"}

# ---- errors ----

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {  # (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    504: ("timeout", None),
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(api: Api, status: int, message: str, rid: str) -> dict[str, Any]:
    """An error body in the vendor's own shape for this status."""
    if api == "anthropic":
        etype = _ANTHROPIC_TYPES.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": etype, "message": message},
            "request_id": f"req_{rid}",
        }
    if api == "openai":
        etype, code = _OPENAI_TYPES.get(status, ("server_error", None))
        return {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return {
        "error": {
            "code": status,
            "message": message,
            "status": _GEMINI_STATUS.get(status, "UNKNOWN"),
        }
    }


_encode = json.JSONEncoder(separators=(",", ":")).encode


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; one shared encoder, as this is on every reply's path."""
    return _encode(obj).encode()
