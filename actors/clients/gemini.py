"""Gemini `generateContent` (`POST /models/{model}:generateContent`, streamed as
`:streamGenerateContent?alt=sse`).

Mapping from the OpenAI shape: system messages become `systemInstruction`, the assistant is
`model`; its `tool_calls` become `functionCall` parts and the `tool` messages answering them
`functionResponse` parts (Gemini answers a call by the function's name, found from the call
id). Tools are `functionDeclarations` with `parametersJsonSchema` and response schemas go in
`responseJsonSchema`: both take standard JSON Schema, so no conversion to Gemini's older
OpenAPI subset is needed. Sampling knobs, n, logprobs and the thinking budget go in
`generationConfig`. Gemini gives function calls no id: one is made from the response id.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from actors.clients.base import (
    Choice,
    Completion,
    FunctionCall,
    Message,
    NamedToolChoice,
    Result,
    TokenLogprob,
    ToolCall,
    TopLogprob,
)
from actors.clients.capabilities import thinking_budget
from actors.clients.faults import BadBody
from actors.clients.stream import StreamParser, json_event
from actors.clients.wire import Request, WireClient, check_limits, count, make_result, need
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def _response(text: str | None) -> dict[str, Any]:
    """A functionResponse's `response` must be an object: JSON objects pass, the rest is wrapped."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return {"result": text or ""}
    return value if isinstance(value, dict) else {"result": value}


def _contents(spec: ProviderSpec, c: Completion) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in c.messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            part = {"functionResponse": {"name": c.tool_name(m.tool_call_id or "") or "",
                                         "response": _response(m.content)}}
            _append(out, "user", part, merge=True)
        elif m.role == "user":
            _append(out, "user", {"text": m.content}, merge=bool(out) and _is_response(out[-1]))
        else:
            out.append({"role": "model", "parts": _model_parts(spec, m)})
    return out


def _is_response(content: dict[str, Any]) -> bool:
    return content["role"] == "user" and "functionResponse" in content["parts"][0]


def _append(out: list[dict[str, Any]], role: str, part: dict[str, Any], merge: bool) -> None:
    if merge and out and out[-1]["role"] == role:
        out[-1]["parts"].append(part)
    else:
        out.append({"role": role, "parts": [part]})


def _model_parts(spec: ProviderSpec, m: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": m.content}] if m.content or not m.tool_calls else []
    for call in m.tool_calls or ():
        args = call.args()
        if args is None:
            raise ProviderError(ErrorClass.BAD_REQUEST, f"tool call {call.id}: arguments are "
                                "not a JSON object", provider=spec.name)
        parts.append({"functionCall": {"name": call.function.name, "args": args}})
    return parts


def _config(spec: ProviderSpec, c: Completion, max_tokens: int) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": max_tokens}
    for key, value in (("temperature", c.temperature), ("topP", c.top_p),
                       ("stopSequences", c.stop), ("seed", c.seed),
                       ("presencePenalty", c.presence_penalty),
                       ("frequencyPenalty", c.frequency_penalty)):
        if value is not None:
            config[key] = value
    if c.n > 1:
        config["candidateCount"] = c.n
    if c.logprobs:
        config["responseLogprobs"] = True
        if c.top_logprobs:
            config["logprobs"] = c.top_logprobs
    if c.wants_json:
        assert c.response_format is not None
        config["responseMimeType"] = "application/json"
        if c.response_format.schema_dict is not None:
            config["responseJsonSchema"] = c.response_format.schema_dict
    budget = thinking_budget(spec, c, max_tokens)
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget}
    return config


def _tools(c: Completion, body: dict[str, Any]) -> None:
    if c.tools:
        body["tools"] = [{"functionDeclarations": [
            {"name": t.function.name,
             **({"description": t.function.description} if t.function.description else {}),
             **({"parametersJsonSchema": t.function.parameters}
                if t.function.parameters is not None else {})}
            for t in c.tools]}]
    tc = c.tool_choice
    if isinstance(tc, NamedToolChoice):
        config = {"mode": "ANY", "allowedFunctionNames": [tc.function.name]}
    elif tc is not None:
        config = {"mode": _MODES[tc]}
    else:
        return
    body["toolConfig"] = {"functionCallingConfig": config}


def _call_id(raw_id: str, candidate: int, k: int) -> str:
    return f"call_{raw_id}_{candidate}_{k}" if raw_id else f"call_{uuid.uuid4().hex[:20]}"


def _logprobs(raw: Any) -> list[TokenLogprob] | None:
    """`logprobsResult.chosenCandidates` with `topCandidates[i].candidates` as alternatives."""
    if not isinstance(raw, dict) or not isinstance(raw.get("chosenCandidates"), list):
        return None
    tops = raw.get("topCandidates") or []
    try:
        return [TokenLogprob(token=t.get("token", ""), logprob=t.get("logProbability", 0.0),
                             top_logprobs=[TopLogprob(token=a.get("token", ""),
                                                      logprob=a.get("logProbability", 0.0))
                                           for a in (tops[i].get("candidates") or ()
                                                     if i < len(tops) else ())])
                for i, t in enumerate(raw["chosenCandidates"])]
    except (AttributeError, TypeError, ValueError) as exc:
        raise BadBody(f"field 'logprobsResult' is malformed ({type(exc).__name__})") from None


def _parts(candidate: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    """(visible text, functionCall objects); thought parts are not part of the answer."""
    content = candidate.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    if parts is not None and not isinstance(parts, list):
        raise BadBody(f"field '{where}.content.parts' has unexpected type")
    text, calls = [], []
    for p in parts or ():
        if not isinstance(p, dict) or p.get("thought"):
            continue
        if isinstance(p.get("text"), str):
            text.append(p["text"])
        elif isinstance(p.get("functionCall"), dict):
            calls.append(p["functionCall"])
    return "".join(text), calls


def _tool_call(fc: dict[str, Any], raw_id: str, candidate: int, k: int) -> ToolCall:
    name = need(fc, "name", str, "functionCall")
    args = fc.get("args") or {}
    return ToolCall(id=fc.get("id") or _call_id(raw_id, candidate, k),
                    function=FunctionCall(name=name, arguments=json.dumps(args, ensure_ascii=False)))


def _usage(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """Gemini omits zero counts; thinking and tool-use prompt tokens are billed, so they count."""
    where = "usageMetadata"
    tin = count(usage, "promptTokenCount", where) + count(usage, "toolUsePromptTokenCount",
                                                             where, default=0)
    thoughts = count(usage, "thoughtsTokenCount", where, default=0)
    tout = count(usage, "candidatesTokenCount", where, default=0) + thoughts
    return tin, tout, count(usage, "cachedContentTokenCount", where, default=0), 0, thoughts


class GeminiClient(WireClient):
    api = "gemini"

    @staticmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str,
              stream: bool = False) -> Request:
        """System messages become `systemInstruction`; the assistant is called `model`."""
        max_tokens = check_limits(spec, completion)
        system = [m.content or "" for m in completion.messages if m.role == "system"]
        contents = _contents(spec, completion)
        if not contents:
            raise ProviderError(
                ErrorClass.BAD_REQUEST,
                "needs at least one user or assistant message",
                provider=spec.name,
            )
        body: dict[str, Any] = {"contents": contents,
                                "generationConfig": _config(spec, completion, max_tokens)}
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        if completion.tools:
            _tools(completion, body)
        model = spec.model.removeprefix("models/")
        headers = {"x-goog-api-key": api_key, "content-type": "application/json"}
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{spec.base_url}/models/{model}:{action}", headers, body

    @staticmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        tin, tout, cached, _, thoughts = _usage(need(data, "usageMetadata", dict))
        raw_id = data.get("responseId", "")
        raw_id = raw_id if isinstance(raw_id, str) else ""
        candidates = data.get("candidates") or []
        if not isinstance(candidates, list):
            raise BadBody("field 'candidates' has unexpected type")
        choices: list[Choice] = []
        if not candidates:
            feedback = data.get("promptFeedback")
            if not (isinstance(feedback, dict) and feedback.get("blockReason")):
                raise BadBody("'candidates' is missing or empty")
            choices.append(Choice(index=0, finish_reason="content_filter"))  # prompt blocked
        for i, candidate in enumerate(candidates):
            where = f"candidates[{i}]"
            if not isinstance(candidate, dict):
                raise BadBody(f"field '{where}' has unexpected type")
            reason = candidate.get("finishReason")
            text, fcs = _parts(candidate, where)
            if not text and not fcs and not reason and "content" not in candidate:
                raise BadBody(f"'{where}' has neither content nor finishReason")
            index = candidate.get("index", i)
            index = index if isinstance(index, int) and index >= 0 else i
            calls = [_tool_call(fc, raw_id, index, k) for k, fc in enumerate(fcs)] or None
            finish = FINISH_REASONS.get(reason, "other") if isinstance(reason, str) else "other"
            if calls and finish == "stop":
                finish = "tool_calls"
            choices.append(Choice(index=index, text=text, tool_calls=calls, finish_reason=finish,
                                  logprobs=_logprobs(candidate.get("logprobsResult"))))
        first = choices[0]
        return make_result(
            spec,
            text=first.text,
            input_tokens=tin,
            output_tokens=tout,
            finish_reason=first.finish_reason,
            latency_s=latency_s,
            raw_id=raw_id,
            cached_input_tokens=cached,
            reasoning_tokens=thoughts,
            tool_calls=first.tool_calls,
            logprobs=first.logprobs,
            choices=choices if len(choices) > 1 else None,
        )

    @staticmethod
    def stream_parser(spec: ProviderSpec, completion: Completion) -> StreamParser:
        return GeminiStream(spec, completion)


class GeminiStream(StreamParser):
    """Each event is a GenerateContentResponse with the next piece of each candidate; the one
    with finishReason carries the final usage. There is no end marker: the body just ends."""

    def __init__(self, spec: ProviderSpec, completion: Completion) -> None:
        super().__init__(spec, completion)
        self._calls: dict[int, int] = {}
        self._finished: set[int] = set()

    def feed(self, event: str, data: str) -> list[Any]:
        chunk = json_event(data)
        state = self.state
        if isinstance(chunk.get("responseId"), str):
            state.raw_id = chunk["responseId"]
        out: list[Any] = []
        candidates = chunk.get("candidates") or []
        if not isinstance(candidates, list):
            raise BadBody("field 'candidates' has unexpected type")
        for i, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                raise BadBody("a candidate is not an object")
            index = candidate.get("index", i) if isinstance(candidate.get("index", i), int) else i
            text, fcs = _parts(candidate, f"candidates[{i}]")
            logprobs = _logprobs(candidate.get("logprobsResult"))
            if text or logprobs:
                out.append(state.text(text, index, logprobs))
            for fc in fcs:
                k = self._calls.get(index, 0)
                self._calls[index] = k + 1
                call = _tool_call(fc, state.raw_id, index, k)
                out.append(state.tool(k, call.id, call.function.name, call.function.arguments,
                                      index))
            reason = candidate.get("finishReason")
            if isinstance(reason, str):
                finish = FINISH_REASONS.get(reason, "other")
                if finish == "stop" and self._calls.get(index):
                    finish = "tool_calls"
                self._finished.add(index)
                out.append(state.finish(finish, index))
        if not candidates and isinstance(chunk.get("promptFeedback"), dict) and \
                chunk["promptFeedback"].get("blockReason"):
            self._finished.add(0)
            out.append(state.finish("content_filter"))
        usage = chunk.get("usageMetadata")
        if isinstance(usage, dict):
            (state.input_tokens, state.output_tokens, state.cached_input_tokens, _,
             state.reasoning_tokens) = _usage(usage)
            state.usage_final = bool(self._finished)
        return out

    def at_end(self) -> None:
        self.state.complete = bool(self._finished)
