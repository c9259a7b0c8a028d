"""OpenAI `chat.completion.chunk` server-sent events from the router's stream events.

The events (actors/clients/stream.py) are already OpenAI-shaped: a `TextDelta` is a content
delta, a `ToolCallDelta` a `tool_calls` delta (id and name on a call's first delta), a
`Finish` a choice's finish_reason. The first chunk of each choice carries the role; with
`stream_options.include_usage` a last chunk with empty choices carries the usage; `[DONE]`
ends the stream. An error after the first chunk is an `{"error": {...}}` event (what
OpenAI sends when a stream fails midway), then the stream ends.
"""

from __future__ import annotations

import json
import time
from typing import Any

from actors.clients.stream import Finish, TextDelta, ToolCallDelta
from actors.routing.route import RouteResult
from serve.openai_compat import finish_reason, logprobs_body, router_extra, usage

DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class ChunkWriter:
    """One streamed completion's chunks, in order."""

    def __init__(self, request_id: str, provider: str, include_usage: bool) -> None:
        self.base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": provider,
                     "system_fingerprint": None}
        self.include_usage = include_usage
        self._opened: set[int] = set()

    def _chunk(self, choice: int, delta: dict[str, Any], finish: str | None = None,
               logprobs: Any = None, **extra: Any) -> str:
        if choice not in self._opened:
            self._opened.add(choice)
            delta = {"role": "assistant", **delta}
        return sse({**self.base, "choices": [{"index": choice, "delta": delta,
                                              "logprobs": logprobs, "finish_reason": finish}],
                    **extra})

    def event(self, ev: TextDelta | ToolCallDelta | Finish) -> str:
        if isinstance(ev, TextDelta):
            return self._chunk(ev.choice, {"content": ev.text}, logprobs=logprobs_body(
                ev.logprobs))
        if isinstance(ev, ToolCallDelta):
            call: dict[str, Any] = {"index": ev.index, "function": {"arguments": ev.arguments}}
            if ev.id is not None:
                call["id"], call["type"] = ev.id, "function"
            if ev.name is not None:
                call["function"]["name"] = ev.name
            return self._chunk(ev.choice, {"tool_calls": [call]})
        return self._chunk(ev.choice, {}, finish_reason(ev.finish_reason))

    def end(self, r: RouteResult) -> str:
        """The router's trace (a chunk with no choices), the usage if asked, and [DONE]."""
        out = sse({**self.base, "choices": [], "router": router_extra(r)})
        if self.include_usage:
            out += sse({**self.base, "choices": [], "usage": usage(r)})
        return out + DONE

    def error(self, body: dict[str, Any]) -> str:
        """A failure after the stream started (`body`: an ApiError's body)."""
        return sse(body) + DONE

