"""Anthropic Messages API (`POST /v1/messages`).

Mapping from the OpenAI shape: system messages become `system`; an assistant's `tool_calls`
become `tool_use` blocks and the `tool` messages answering them one user turn of
`tool_result` blocks; `tool_choice` required → `any`, a named tool → `tool`,
`parallel_tool_calls: false` → `disable_parallel_tool_use`. A JSON `response_format` is a
forced call of a tool named `json_answer` whose input schema is the requested one; its input
comes back as the answer's text. Stop sequences, top_p, `user` (→ `metadata.user_id`) and a
thinking budget (→ `thinking`) map directly.
"""

from __future__ import annotations

import json
from typing import Any

from actors.clients.base import Completion, FunctionCall, Message, NamedToolChoice, Result, ToolCall
from actors.clients.capabilities import ANTHROPIC_JSON_TOOL, thinking_budget
from actors.clients.faults import BadBody, ErrorEvent
from actors.clients.stream import StreamParser, json_event
from actors.clients.wire import Request, WireClient, check_limits, count, make_result, need
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError

VERSION = "2023-06-01"
#: Anthropic's temperature range is 0..1, the callers' (OpenAI's) 0..2.
MAX_TEMPERATURE = 1.0
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}
JSON_TOOL_DESCRIPTION = "Give the final answer: call this with the answer as the input."
EMPTY_OBJECT: dict[str, Any] = {"type": "object"}


def _args(call: ToolCall, spec: ProviderSpec) -> dict[str, Any]:
    args = call.args()
    if args is None:
        raise ProviderError(ErrorClass.BAD_REQUEST, f"tool call {call.id}: arguments are not a "
                            "JSON object", provider=spec.name)
    return args


def _messages(spec: ProviderSpec, messages: list[Message]) -> list[dict[str, Any]]:
    """Tool results (and a user message after them) merge into one user turn, results first."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.function.name,
                        "input": _args(c, spec)} for c in m.tool_calls]
            out.append({"role": "assistant", "content": blocks})
        elif m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.role == "user" and out and out[-1]["role"] == "user" and isinstance(
                out[-1]["content"], list):
            out[-1]["content"].append({"type": "text", "text": m.content})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _tools(c: Completion, body: dict[str, Any]) -> None:
    """tools / tool_choice, with the forced JSON tool for a JSON response_format."""
    tools = [{"name": t.function.name, "input_schema": t.function.schema_or_empty(),
              **({"description": t.function.description} if t.function.description else {}),
              **({"strict": True} if t.function.strict else {})} for t in c.tools or ()]
    choice: dict[str, Any] | None = None
    tc = c.tool_choice
    if isinstance(tc, NamedToolChoice):
        choice = {"type": "tool", "name": tc.function.name}
    elif tc is not None:
        choice = {"type": {"auto": "auto", "required": "any", "none": "none"}[tc]}
    if c.wants_json and not (tc == "required" or isinstance(tc, NamedToolChoice)):
        fmt = c.response_format
        assert fmt is not None
        tools.append({"name": ANTHROPIC_JSON_TOOL, "description": JSON_TOOL_DESCRIPTION,
                      "input_schema": fmt.schema_dict or EMPTY_OBJECT})
        # with tools of its own the model may still call them instead of answering
        choice = {"type": "any"} if c.tools and tc != "none" else {
            "type": "tool", "name": ANTHROPIC_JSON_TOOL}
    if c.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if tools:
        body["tools"] = tools
        if choice is not None:  # a tool_choice without tools is refused
            body["tool_choice"] = choice


class AnthropicClient(WireClient):
    api = "anthropic"

    @staticmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str,
              stream: bool = False) -> Request:
        """System messages become the top-level `system`; temperature is capped at 1."""
        c = completion
        max_tokens = check_limits(spec, c)
        system = [m.content or "" for m in c.messages if m.role == "system"]
        messages = _messages(spec, c.messages)
        if not messages:
            raise ProviderError(
                ErrorClass.BAD_REQUEST,
                "needs at least one user or assistant message",
                provider=spec.name,
            )
        body: dict[str, Any] = {"model": spec.model, "max_tokens": max_tokens, "messages": messages}
        if system:
            body["system"] = "\n\n".join(system)
        if c.temperature is not None:
            body["temperature"] = min(c.temperature, MAX_TEMPERATURE)
        if c.top_p is not None:
            body["top_p"] = c.top_p
        if c.stop is not None:
            body["stop_sequences"] = c.stop
        if c.user is not None:
            body["metadata"] = {"user_id": c.user}
        if c.tools or c.wants_json or c.tool_choice is not None:
            _tools(c, body)
        budget = thinking_budget(spec, c, max_tokens)
        if budget:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if stream:
            body["stream"] = True
        headers = {
            "x-api-key": api_key,
            "anthropic-version": VERSION,
            "content-type": "application/json",
        }
        return f"{spec.base_url}/v1/messages", headers, body

    @staticmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        """Text is every `text` block joined, or the forced JSON tool's input; cache reads and
        writes are part of the prompt (billed at their own prices)."""
        blocks = need(data, "content", list)
        text: list[str] = []
        calls: list[ToolCall] = []
        answered = False
        for i, b in enumerate(blocks):
            if not isinstance(b, dict):
                continue
            kind = b.get("type")
            if kind == "text" and isinstance(b.get("text"), str):
                text.append(b["text"])
            elif kind == "tool_use":
                where = f"content[{i}]"
                name = need(b, "name", str, where)
                args = need(b, "input", dict, where)
                if name == ANTHROPIC_JSON_TOOL:
                    text = [json.dumps(args, ensure_ascii=False)]
                    answered = True
                else:
                    calls.append(ToolCall(id=need(b, "id", str, where), function=FunctionCall(
                        name=name, arguments=json.dumps(args, ensure_ascii=False))))
        stop = data.get("stop_reason")
        if stop is not None and not isinstance(stop, str):
            raise BadBody("field 'stop_reason' has unexpected type")
        finish = STOP_REASONS.get(stop or "", "other")
        if answered and not calls and finish == "tool_calls":
            finish = "stop"
        tin, tout, cached, write, reasoning = _usage(need(data, "usage", dict))
        return make_result(
            spec,
            text="".join(text),
            input_tokens=tin,
            output_tokens=tout,
            finish_reason=finish,
            latency_s=latency_s,
            raw_id=data.get("id", ""),
            cached_input_tokens=cached,
            cache_write_tokens=write,
            reasoning_tokens=reasoning,
            tool_calls=calls or None,
        )

    @staticmethod
    def stream_parser(spec: ProviderSpec, completion: Completion) -> StreamParser:
        return AnthropicStream(spec, completion)


def _usage(usage: dict[str, Any], where: str = "usage") -> tuple[int, int, int, int, int]:
    """(input, output, cache read, cache write, thinking): `input_tokens` excludes both cache
    counts, so the prompt is their sum."""
    cached = count(usage, "cache_read_input_tokens", where, default=0)
    write = count(usage, "cache_creation_input_tokens", where, default=0)
    details = usage.get("output_tokens_details")
    thinking = count(details, "thinking_tokens", f"{where}.output_tokens_details", default=0) \
        if isinstance(details, dict) else 0
    return (count(usage, "input_tokens", where) + cached + write,
            count(usage, "output_tokens", where), cached, write, thinking)


class AnthropicStream(StreamParser):
    """message_start (input usage) → content_block_start/delta/stop per block → message_delta
    (stop reason, output usage) → message_stop; `ping` keeps the line open, `error` ends it."""

    def __init__(self, spec: ProviderSpec, completion: Completion) -> None:
        super().__init__(spec, completion)
        self._blocks: dict[int, tuple[str, int]] = {}  # block index -> (kind, tool call index)
        self._calls = 0
        self._json_tool: int | None = None
        self._stop: str | None = None

    def feed(self, event: str, data: str) -> list[Any]:
        if event == "error":
            raise ErrorEvent(data.encode())
        msg = json_event(data)
        kind = msg.get("type")
        state = self.state
        if kind == "ping":
            return []
        if kind == "message_start":
            message = need(msg, "message", dict)
            state.raw_id = message.get("id") or ""
            tin, tout, state.cached_input_tokens, state.cache_write_tokens, _ = _usage(
                need(message, "usage", dict), "message.usage")
            state.input_tokens, state.output_tokens = tin, tout
            return []
        if kind == "content_block_start":
            index, block = need(msg, "index", int), need(msg, "content_block", dict)
            btype = block.get("type")
            if btype == "tool_use":
                if block.get("name") == ANTHROPIC_JSON_TOOL:
                    self._blocks[index] = ("json", 0)
                    return []
                self._blocks[index] = ("tool", self._calls)
                self._calls += 1
                return [state.tool(self._calls - 1, need(block, "id", str, "content_block"),
                                   need(block, "name", str, "content_block"))]
            self._blocks[index] = (btype if isinstance(btype, str) else "", 0)
            text = block.get("text") if btype == "text" else None
            return [state.text(text)] if text else []
        if kind == "content_block_delta":
            index, delta = need(msg, "index", int), need(msg, "delta", dict)
            block_kind, call = self._blocks.get(index, ("", 0))
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [state.text(need(delta, "text", str, "delta"))]
            if dtype == "input_json_delta":
                piece = need(delta, "partial_json", str, "delta")
                if block_kind == "json":
                    return [state.text(piece)] if piece else []
                return [state.tool(call, arguments=piece)] if piece else []
            return []  # thinking, signature, citations
        if kind == "content_block_stop":
            return []
        if kind == "message_delta":
            delta = need(msg, "delta", dict)
            stop = delta.get("stop_reason")
            usage = msg.get("usage")
            if isinstance(usage, dict):
                self._delta_usage(usage)
            if isinstance(stop, str):
                self._stop = stop
                finish = STOP_REASONS.get(stop, "other")
                if finish == "tool_calls" and not self._calls:
                    finish = "stop"  # the forced JSON tool: an answer, not a call
                return [state.finish(finish)]
            return []
        if kind == "message_stop":
            state.complete = True
            return []
        if not isinstance(kind, str):
            raise BadBody("event without a 'type'")
        return []  # Anthropic may add event types; its docs ask clients to skip unknown ones

    def at_end(self) -> None:
        """The final marker ([DONE] / message_stop) is the only way to complete."""

    def _delta_usage(self, usage: dict[str, Any]) -> None:
        """message_delta's counts are cumulative; input counts appear there on newer APIs."""
        state = self.state
        state.output_tokens = count(usage, "output_tokens", "usage")
        details = usage.get("output_tokens_details")
        if isinstance(details, dict):
            state.reasoning_tokens = count(details, "thinking_tokens", "usage", default=0)
        if usage.get("input_tokens") is not None:
            state.input_tokens, _, state.cached_input_tokens, state.cache_write_tokens, _ = \
                _usage({**usage, "output_tokens": 0})
        state.usage_final = state.input_tokens is not None
