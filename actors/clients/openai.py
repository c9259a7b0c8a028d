"""OpenAI-compatible chat completions (`POST /chat/completions`): OpenAI, Mistral, Together, Groq.

The caller's request is already in this shape; the hosts differ in a few names
(actors/clients/capabilities.py: `dialect`): Mistral's `random_seed` and tool_choice "any",
Together's integer `logprobs` and its `{tokens, token_logprobs}` answer, Groq's stream usage
under `x_groq`. Only OpenAI itself is asked for `stream_options.include_usage`; the others
send usage in their last chunk unasked (and Mistral refuses unknown fields).
"""

from __future__ import annotations

import json
from typing import Any

from actors.clients.base import (
    Choice,
    Completion,
    FunctionCall,
    Message,
    Result,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)
from actors.clients.capabilities import dialect
from actors.clients.faults import BadBody
from actors.clients.stream import StreamParser, StreamState, json_event
from actors.clients.wire import Request, WireClient, check_limits, count, make_result, need
from actors.config import ProviderSpec

FINISH_REASONS = {"stop": "stop", "length": "length", "content_filter": "content_filter",
                  "tool_calls": "tool_calls", "function_call": "tool_calls"}


def _message(m: Message) -> dict[str, Any]:
    if m.tool_calls is None and m.tool_call_id is None:
        return {"role": m.role, "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [c.model_dump() for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _params(spec: ProviderSpec, c: Completion, body: dict[str, Any]) -> None:
    """The optional parameters, named as this host names them."""
    host = dialect(spec)
    for key, value in (("top_p", c.top_p), ("stop", c.stop),
                       ("random_seed" if host == "mistral" else "seed", c.seed),
                       ("presence_penalty", c.presence_penalty),
                       ("frequency_penalty", c.frequency_penalty),
                       ("parallel_tool_calls", c.parallel_tool_calls)):
        if value is not None:
            body[key] = value
    if c.user is not None and host == "openai":
        body["user"] = c.user
    if c.logprobs:
        if host == "together":
            body["logprobs"] = max(c.top_logprobs or 0, 1)
        else:
            body["logprobs"] = True
            if c.top_logprobs is not None:
                body["top_logprobs"] = c.top_logprobs
    if c.n > 1:
        body["n"] = c.n
    if c.tools:
        body["tools"] = [t.model_dump(exclude_none=True) for t in c.tools]
    if c.tool_choice is not None and c.tools:  # OpenAI refuses a tool_choice without tools
        choice = c.tool_choice
        if isinstance(choice, str):
            body["tool_choice"] = "any" if host == "mistral" and choice == "required" else choice
        else:
            body["tool_choice"] = choice.model_dump()
    if c.response_format is not None:
        body["response_format"] = c.response_format.model_dump(by_alias=True, exclude_none=True)


def _text(content: Any, where: str) -> str:
    """`content` is a string, null (refusals, tool calls) or, on some servers, a list of parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    raise BadBody(f"field '{where}.content' is a {type(content).__name__}")


def _tool_calls(raw: Any, where: str) -> list[ToolCall] | None:
    if not raw:
        return None
    if not isinstance(raw, list):
        raise BadBody(f"field '{where}.tool_calls' has unexpected type {type(raw).__name__}")
    calls = []
    for i, call in enumerate(raw):
        fn = need(call, "function", dict, f"{where}.tool_calls[{i}]")
        args = fn.get("arguments") or ""
        calls.append(ToolCall(
            id=need(call, "id", str, f"{where}.tool_calls[{i}]"),
            function=FunctionCall(name=need(fn, "name", str, f"{where}.tool_calls[{i}].function"),
                                  arguments=args if isinstance(args, str) else json.dumps(args))))
    return calls


def _logprobs(raw: Any) -> list[TokenLogprob] | None:
    """OpenAI's `{content: [{token, logprob, top_logprobs}]}`, or Together's parallel lists."""
    if not isinstance(raw, dict):
        return None
    try:
        if isinstance(raw.get("content"), list):
            return [TokenLogprob(token=t["token"], logprob=t["logprob"], top_logprobs=[
                TopLogprob(token=a["token"], logprob=a["logprob"])
                for a in t.get("top_logprobs") or ()]) for t in raw["content"]]
        tokens, values = raw.get("tokens"), raw.get("token_logprobs")
        if isinstance(tokens, list) and isinstance(values, list):
            return [TokenLogprob(token=t, logprob=v) for t, v in zip(tokens, values, strict=False)
                    if v is not None]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadBody(f"field 'logprobs' is malformed ({type(exc).__name__})") from None
    return None


def _choice(raw: Any, i: int) -> tuple[int, str, list[ToolCall] | None, Any, Any]:
    """(index, text, tool calls, finish reason, logprobs) of one choice: plain tuples, as
    this is on every answer's path and most answers have one choice."""
    where = f"choices[{i}]"
    message = need(raw, "message", dict, where)
    finish = raw.get("finish_reason")
    finish = FINISH_REASONS.get(finish, "other") if isinstance(finish, str) else "other"
    index = raw.get("index", i)
    calls = message.get("tool_calls")
    logprobs = raw.get("logprobs")
    return (index if isinstance(index, int) and index >= 0 else i,
            _text(message.get("content"), f"{where}.message"),
            _tool_calls(calls, f"{where}.message") if calls else None, finish,
            _logprobs(logprobs) if logprobs else None)


def _usage(usage: dict[str, Any], where: str = "usage") -> tuple[int, int, int, int, int]:
    """(input, output, cached input, cache write, reasoning) as OpenAI reports them."""
    tin = count(usage, "prompt_tokens", where)
    tout = count(usage, "completion_tokens", where)
    prompt = usage.get("prompt_tokens_details")
    done = usage.get("completion_tokens_details")
    cached = write = reasoning = 0
    if isinstance(prompt, dict):
        cached = count(prompt, "cached_tokens", f"{where}.prompt_tokens_details", default=0)
        write = count(prompt, "cache_write_tokens", f"{where}.prompt_tokens_details", default=0)
    if isinstance(done, dict):
        reasoning = count(done, "reasoning_tokens", f"{where}.completion_tokens_details",
                          default=0)
    return tin, tout, cached, write, reasoning


class OpenAIClient(WireClient):
    api = "openai"

    @staticmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str,
              stream: bool = False) -> Request:
        max_tokens = check_limits(spec, completion)
        body: dict[str, Any] = {
            "model": spec.model,
            "messages": [_message(m) for m in completion.messages],
            "max_tokens": max_tokens,
        }
        if completion.temperature is not None:
            body["temperature"] = completion.temperature
        _params(spec, completion, body)
        if stream:
            body["stream"] = True
            if dialect(spec) == "openai":
                body["stream_options"] = {"include_usage": True}
        headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
        return f"{spec.base_url}/chat/completions", headers, body

    @staticmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        raw_choices = need(data, "choices", list)
        if not raw_choices:
            raise BadBody("'choices' is empty")
        choices = [_choice(raw, i) for i, raw in enumerate(raw_choices)]
        tin, tout, cached, write, reasoning = _usage(need(data, "usage", dict))
        text, calls, finish, logprobs = choices[0][1:]
        return make_result(
            spec,
            text=text,
            input_tokens=tin,
            output_tokens=tout,
            finish_reason=finish,
            latency_s=latency_s,
            raw_id=data.get("id", ""),
            cached_input_tokens=cached,
            cache_write_tokens=write,
            reasoning_tokens=reasoning,
            tool_calls=calls,
            logprobs=logprobs,
            choices=[Choice(index=i, text=t, tool_calls=tc, finish_reason=f, logprobs=lp)
                     for i, t, tc, f, lp in choices] if len(choices) > 1 else None,
        )

    @staticmethod
    def stream_parser(spec: ProviderSpec, completion: Completion) -> StreamParser:
        return OpenAIStream(spec, completion)


class OpenAIStream(StreamParser):
    """`data: {chat.completion.chunk}` events, then `data: [DONE]`; usage in a last chunk
    with no choices (OpenAI, Mistral, Together) or under `x_groq.usage` (Groq)."""

    def at_end(self) -> None:
        """The final marker ([DONE] / message_stop) is the only way to complete."""

    def feed(self, event: str, data: str) -> list[Any]:
        state: StreamState = self.state
        if data.strip() == "[DONE]":
            state.complete = True
            return []
        chunk = json_event(data)
        if isinstance(chunk.get("id"), str):
            state.raw_id = chunk["id"]
        usage = chunk.get("usage")
        if not isinstance(usage, dict) and isinstance(chunk.get("x_groq"), dict):
            usage = chunk["x_groq"].get("usage")
        if isinstance(usage, dict):
            (state.input_tokens, state.output_tokens, state.cached_input_tokens,
             state.cache_write_tokens, state.reasoning_tokens) = _usage(usage)
            state.usage_final = True
        out: list[Any] = []
        for raw in chunk.get("choices") or ():
            if not isinstance(raw, dict):
                raise BadBody("a choice is not an object")
            i = raw.get("index", 0)
            delta = raw.get("delta") or {}
            if not isinstance(i, int) or not isinstance(delta, dict):
                raise BadBody("field 'choices[].delta' or 'index' has unexpected type")
            text = _text(delta.get("content"), "delta")
            logprobs = _logprobs(raw.get("logprobs"))
            if text or logprobs:
                out.append(state.text(text, i, logprobs))
            for k, call in enumerate(delta.get("tool_calls") or ()):
                if not isinstance(call, dict):
                    raise BadBody("a tool call delta is not an object")
                fn = call.get("function") or {}
                index = call.get("index", k)
                out.append(state.tool(index if isinstance(index, int) else k, call.get("id"),
                                      fn.get("name"), fn.get("arguments") or "", i))
            finish = raw.get("finish_reason")
            if isinstance(finish, str):
                out.append(state.finish(FINISH_REASONS.get(finish, "other"), i))
        return out
