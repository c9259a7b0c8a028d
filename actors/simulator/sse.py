"""Streamed answers as each vendor sends them, cut into frames the server sends apart.

A frame is the bytes sent at one moment: the first goes out after the time to first token,
each next one a chunk interval later (actors/simulator/app.py paces them). Each format's
events follow its SDK's stream types (checked in tests/test_simulator_streams.py):
- OpenAI: `chat.completion.chunk` data events, a usage chunk when `include_usage`, `[DONE]`;
- Anthropic: message_start, content_block_start/delta/stop (text, thinking, tool_use with
  input_json_delta), ping, message_delta (stop reason, usage), message_stop;
- Gemini: GenerateContentResponse chunks, the last with finishReason and full usage.
"""

from __future__ import annotations

import json
import time
from typing import Any

from actors.simulator.asks import Api
from actors.simulator.turns import TOKEN_CHARS, Out, Turn
from actors.simulator.wire import (
    GEMINI_FINISH,
    anthropic_stop,
    anthropic_usage,
    dumps,
    error_body,
    gemini_logprobs,
    gemini_usage,
    openai_logprobs,
    openai_usage,
)


def _pieces(text: str, n: int) -> list[str]:
    """`text` in at most n pieces on token boundaries (so logprobs split with it)."""
    if not text:
        return []
    size = -(-len(text) // n)
    size = -(-size // TOKEN_CHARS) * TOKEN_CHARS
    return [text[i:i + size] for i in range(0, len(text), size)]


def _frames(parts: list[list[bytes]], chunks: int) -> list[bytes]:
    """Join per-step event lists into at most `chunks` frames (the last absorbs the rest)."""
    out = [b"".join(p) for p in parts if p]
    if len(out) > chunks:
        out = out[:chunks - 1] + [b"".join(out[chunks - 1:])]
    return out


def _data(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\n" + _data(obj)


def _openai(model: str, t: Turn, rid: str, include_usage: bool, chunks: int,
            usage: bool, usage_always: bool) -> list[bytes]:
    base: dict[str, Any] = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model,
                            "system_fingerprint": None}
    if include_usage:
        base["usage"] = None

    def chunk(i: int, delta: dict[str, Any], finish: str | None = None,
              logprobs: Any = None) -> bytes:
        return _data({**base, "choices": [{"index": i, "delta": delta, "logprobs": logprobs,
                                           "finish_reason": finish}]})

    steps: list[list[bytes]] = [[chunk(i, {"role": "assistant", "content": ""})
                                 for i in range(len(t.choices))]]
    per_choice = [_openai_steps(i, c, chunks, chunk) for i, c in enumerate(t.choices)]
    for k in range(max(map(len, per_choice))):
        steps.append([s[k] for s in per_choice if k < len(s)])
    if len(steps) > 1:  # the role chunk goes with the first content
        steps[1] = steps[0] + steps[1]
        steps.pop(0)
    last = [chunk(i, {}, c.finish) for i, c in enumerate(t.choices)]
    if include_usage and usage:
        last.append(_data({**base, "choices": [], "usage": openai_usage(t)}))
    elif usage_always and usage:  # Mistral and Together: in the last chunk, unasked
        last[-1] = _data({**json.loads(last[-1][6:]), "usage": openai_usage(t)})
    steps[-1] = steps[-1] + last + [b"data: [DONE]\n\n"]
    return _frames(steps, chunks)


def _openai_steps(i: int, c: Out, chunks: int, chunk: Any) -> list[bytes]:
    out = []
    pos = 0
    for piece in _pieces(c.text, chunks):
        lp = None
        if c.logprobs is not None:
            n = len(piece) // TOKEN_CHARS + (len(piece) % TOKEN_CHARS > 0)
            lp = openai_logprobs(c.logprobs[pos:pos + n])
            pos += n
        out.append(chunk(i, {"content": piece}, logprobs=lp))
    for k, call in enumerate(c.calls):
        head = {"index": k, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}
        out.append(chunk(i, {"tool_calls": [head]}))
        for piece in _pieces(call.arguments, max(chunks // max(len(c.calls), 1), 1)):
            out.append(chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))
    return out


def _anthropic(model: str, t: Turn, rid: str, chunks: int, usage: bool) -> list[bytes]:
    c = t.choices[0]
    start = {"type": "message_start", "message": {
        "id": f"msg_{rid}", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": anthropic_usage(t, output=False)}}
    steps: list[list[bytes]] = [[_event("message_start", start)]]
    index = 0

    def block(kind: str, body: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        steps[-1].append(_event("content_block_start", {
            "type": "content_block_start", "index": index, "content_block": body}))
        if index == 0:
            steps[-1].append(_event("ping", {"type": "ping"}))
        for k, delta in enumerate(deltas):
            event = _event("content_block_delta", {"type": "content_block_delta",
                                                   "index": index, "delta": delta})
            if k == 0:
                steps[-1].append(event)
            else:
                steps.append([event])
        steps[-1].append(_event("content_block_stop", {"type": "content_block_stop",
                                                       "index": index}))
        index += 1

    if c.thinking:
        block("thinking", {"type": "thinking", "thinking": "", "signature": ""},
              [{"type": "thinking_delta", "thinking": "Weighing trend against risk."},
               {"type": "signature_delta", "signature": "sim-signature"}])
    if c.text or not c.calls:
        block("text", {"type": "text", "text": ""},
              [{"type": "text_delta", "text": p} for p in _pieces(c.text, chunks)])
    for call in c.calls:
        block("tool_use", {"type": "tool_use", "id": call.id, "name": call.name, "input": {}},
              [{"type": "input_json_delta", "partial_json": p}
               for p in _pieces(call.arguments, max(chunks // len(c.calls), 1))])
    delta: dict[str, Any] = {"type": "message_delta", "delta": {
        "stop_reason": anthropic_stop(c), "stop_sequence": c.stop_sequence}}
    if usage:
        delta["usage"] = anthropic_usage(t)
    steps[-1] += [_event("message_delta", delta),
                  _event("message_stop", {"type": "message_stop"})]
    return _frames(steps, chunks)


def _gemini(model: str, t: Turn, rid: str, chunks: int, usage: bool) -> list[bytes]:
    per_choice: list[list[dict[str, Any]]] = []
    for i, c in enumerate(t.choices):
        pieces: list[dict[str, Any]] = []
        pos = 0
        for p in _pieces(c.text, chunks):
            cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": p}]},
                                    "index": i}
            if c.logprobs is not None:
                n = len(p) // TOKEN_CHARS + (len(p) % TOKEN_CHARS > 0)
                cand["logprobsResult"] = gemini_logprobs(c.logprobs[pos:pos + n])
                pos += n
            pieces.append(cand)
        if c.calls:
            pieces.append({"content": {"role": "model", "parts": [
                {"functionCall": {"name": k.name, "args": k.args}} for k in c.calls]},
                "index": i})
        if not pieces:
            pieces.append({"content": {"role": "model", "parts": [{"text": ""}]}, "index": i})
        pieces[-1]["finishReason"] = GEMINI_FINISH.get(c.finish, "STOP")
        per_choice.append(pieces)
    steps = []
    n = max(map(len, per_choice))
    for k in range(n):
        chunk: dict[str, Any] = {"candidates": [p[k] for p in per_choice if k < len(p)]}
        if usage:
            chunk["usageMetadata"] = gemini_usage(t, final=k == n - 1)
        chunk |= {"modelVersion": model, "responseId": rid}
        steps.append([b"data: " + dumps(chunk) + b"\r\n\r\n"])
    return _frames(steps, chunks)


def stream_frames(api: Api, model: str, t: Turn, rid: str, *, chunks: int,
                  include_usage: bool = False, usage: bool = True,
                  usage_always: bool = False) -> list[bytes]:
    """The whole streamed answer in at most `chunks` frames; `usage=False` leaves the usage
    out (the malformed fault's `no_usage`); `usage_always`: see Profile.stream_usage_always."""
    if api == "openai":
        return _openai(model, t, rid, include_usage, chunks, usage, usage_always)
    if api == "anthropic":
        return _anthropic(model, t, rid, chunks, usage)
    return _gemini(model, t, rid, chunks, usage)


def error_frame(api: Api, status: int, message: str, rid: str) -> bytes:
    """An error event in the middle of a stream, as each vendor sends one."""
    body = error_body(api, status, message, rid)
    if api == "anthropic":
        body.pop("request_id", None)
        return _event("error", body)
    return _data(body)


def malformed_frame() -> bytes:
    """An event whose data is not JSON."""
    return b"data: {\"candidates\": [{\"content\": <html>502 Bad Gateway</html>\n\n"


def sse_json(frame: bytes) -> list[Any]:
    """The JSON objects of a frame's data lines ([DONE] left out): for tests and tools."""
    out = []
    for line in frame.splitlines():
        if line.startswith(b"data: ") and line[6:].strip() != b"[DONE]":
            out.append(json.loads(line[6:]))
    return out
