"""The three wire formats as a server speaks them: auth, answers and errors (streamed answers:
actors/simulator/sse.py; requests: actors/simulator/asks.py).

This is the server-side mirror of ``actors/clients/``; bodies follow PROVIDERS.md and are
checked in the tests against the official SDKs' own response types.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from actors.simulator.asks import Api, Ask, WireError, parse
from actors.simulator.turns import Out, Turn

__all__ = ["Api", "Ask", "WireError", "authorized", "dumps", "error_body", "ok_body", "parse"]


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

ANTHROPIC_STOP = {"tool_calls": "tool_use", "length": "max_tokens"}
GEMINI_FINISH = {"length": "MAX_TOKENS"}


def anthropic_stop(c: Out) -> str:
    if c.stop_sequence is not None:
        return "stop_sequence"
    return ANTHROPIC_STOP.get(c.finish, "end_turn")


def anthropic_usage(t: Turn, output: bool = True) -> dict[str, Any]:
    """`input_tokens` excludes the cache reads and writes, which have counts of their own."""
    usage: dict[str, Any] = {
        "input_tokens": t.in_tok - t.cached - t.cache_write,
        "cache_creation_input_tokens": t.cache_write,
        "cache_read_input_tokens": t.cached,
        "output_tokens": t.out_tok if output else 1,
    }
    if output and t.thinking:
        usage["output_tokens_details"] = {"thinking_tokens": t.thinking}
    return usage


def anthropic_blocks(c: Out) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if c.thinking:
        blocks.append({"type": "thinking", "thinking": "Weighing trend against risk.",
                       "signature": "sim-signature"})
    if c.text or not c.calls:
        blocks.append({"type": "text", "text": c.text})
    blocks += [{"type": "tool_use", "id": k.id, "name": k.name, "input": k.args}
               for k in c.calls]
    return blocks


def openai_usage(t: Turn) -> dict[str, Any]:
    """The details blocks only when they have something to say (the SDK takes either)."""
    out = t.out_tok
    usage: dict[str, Any] = {"prompt_tokens": t.in_tok, "completion_tokens": out,
                             "total_tokens": t.in_tok + out}
    if t.cached:
        usage["prompt_tokens_details"] = {"cached_tokens": t.cached}
    if t.thinking:
        usage["completion_tokens_details"] = {"reasoning_tokens": t.thinking}
    return usage


def openai_logprobs(entries: list[tuple[str, float, list[tuple[str, float]]]] | None,
                    ) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()),
                         "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode())}
                                          for a, alp in alts]}
                        for t, lp, alts in entries], "refusal": None}


def openai_tool_calls(c: Out) -> list[dict[str, Any]] | None:
    if not c.calls:
        return None
    return [{"id": k.id, "type": "function", "function": {"name": k.name,
                                                          "arguments": k.arguments}}
            for k in c.calls]


def gemini_usage(t: Turn, final: bool = True) -> dict[str, Any]:
    """Gemini leaves zero counts out; thinking is separate from the candidates' count."""
    visible = t.out_tok - t.thinking
    usage: dict[str, Any] = {"promptTokenCount": t.in_tok}
    if final:
        usage["candidatesTokenCount"] = visible
        if t.thinking:
            usage["thoughtsTokenCount"] = t.thinking
    if t.cached:
        usage["cachedContentTokenCount"] = t.cached
    usage["totalTokenCount"] = t.in_tok + (t.out_tok if final else 0)
    return usage


def gemini_logprobs(entries: list[tuple[str, float, list[tuple[str, float]]]],
                    ) -> dict[str, Any]:
    return {"chosenCandidates": [{"token": t, "logProbability": lp} for t, lp, _ in entries],
            "topCandidates": [{"candidates": [{"token": a, "logProbability": alp}
                                              for a, alp in alts]} for _, _, alts in entries]}


def gemini_parts(c: Out) -> list[dict[str, Any]]:
    if not c.text and not c.calls and c.thinking:
        return []  # all thinking: Gemini sends a content without parts
    parts: list[dict[str, Any]] = [{"text": c.text}] if c.text or not c.calls else []
    parts += [{"functionCall": {"name": k.name, "args": k.args}} for k in c.calls]
    return parts


def ok_body(api: Api, model: str, t: Turn, rid: str) -> dict[str, Any]:
    """A successful response body, as the vendor would send it."""
    if api == "anthropic":
        c = t.choices[0]
        return {
            "id": f"msg_{rid}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": anthropic_blocks(c),
            "stop_reason": anthropic_stop(c),
            "stop_sequence": c.stop_sequence,
            "usage": anthropic_usage(t),
        }
    if api == "openai":
        return {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text if c.text or not c.calls
                                else None, **({"tool_calls": openai_tool_calls(c)}
                                              if c.calls else {})},
                    "logprobs": openai_logprobs(c.logprobs),
                    "finish_reason": c.finish,
                }
                for i, c in enumerate(t.choices)
            ],
            "usage": openai_usage(t),
        }
    candidates = []
    for i, c in enumerate(t.choices):
        parts = gemini_parts(c)
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts} if parts
                                else {"role": "model"},
                                "finishReason": GEMINI_FINISH.get(c.finish, "STOP"), "index": i}
        if c.logprobs is not None:
            cand["logprobsResult"] = gemini_logprobs(c.logprobs)
        candidates.append(cand)
    return {
        "candidates": candidates,
        "usageMetadata": gemini_usage(t),
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
