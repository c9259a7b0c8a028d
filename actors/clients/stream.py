"""Streamed answers: the normalized events every wire client yields, and the state that turns
them into the same `Result` a synchronous attempt returns.

A stream yields `TextDelta` / `ToolCallDelta` events as the provider sends them, a `Finish`
per choice, and last a `Done` carrying the whole Result (usage from the provider's final
event). A stream that breaks raises `StreamError`: a ProviderError that also says whether
content had already been delivered (no fallback after the first token) and carries the
partial Result, its usage estimated from the tokens received when the usage event never came.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from actors.clients.base import Choice, Completion, FunctionCall, Result, TokenLogprob, ToolCall
from actors.clients.faults import BadBody, ErrorEvent
from actors.config import ProviderSpec
from actors.core.cost import cost_usd
from actors.core.errors import ErrorClass, ProviderError
from actors.core.tokens import estimate_messages, estimate_tokens, estimate_tools


class TextDelta(BaseModel):
    """More text of one choice."""

    type: Literal["text"] = "text"
    choice: int = Field(default=0, ge=0, description="Which of n choices.")
    text: str
    logprobs: list[TokenLogprob] | None = None


class ToolCallDelta(BaseModel):
    """A tool call starting (id and name set) or more of its arguments (OpenAI's shape)."""

    type: Literal["tool_call"] = "tool_call"
    choice: int = Field(default=0, ge=0)
    index: int = Field(ge=0, description="The call's position among the choice's calls.")
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class Finish(BaseModel):
    """A choice is complete."""

    type: Literal["finish"] = "finish"
    choice: int = Field(default=0, ge=0)
    finish_reason: str


class Done(BaseModel):
    """The last event: the whole answer, usage as billed, timings."""

    type: Literal["done"] = "done"
    result: Result


StreamEvent = Annotated[TextDelta | ToolCallDelta | Finish | Done, Field(discriminator="type")]


class StreamError(ProviderError):
    """A stream that failed after it started; `started`: content was already delivered."""

    def __init__(self, error_class: ErrorClass | str, message: str, *, provider: str | None,
                 started: bool, partial: Result | None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(error_class, message, provider=provider, status=status,
                         retry_after=retry_after)
        self.started = started
        self.partial = partial

    def __reduce__(self):  # keep the fields across Ray's pickling
        return (_rebuild, (self.error_class.value, self.message, self.provider, self.started,
                           self.partial, self.status, self.retry_after))


def _rebuild(cls: str, message: str, provider, started, partial, status, retry_after):
    return StreamError(cls, message, provider=provider, started=started, partial=partial,
                       status=status, retry_after=retry_after)


class _ChoiceState:
    __slots__ = ("calls", "finish", "logprobs", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        self.finish: str | None = None
        self.logprobs: list[TokenLogprob] | None = None


class StreamState:
    """What a stream has said so far; the format parsers write usage here as it arrives."""

    def __init__(self, spec: ProviderSpec, completion: Completion) -> None:
        self.spec = spec
        self.completion = completion
        self.choices: dict[int, _ChoiceState] = {}
        self.raw_id = ""
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cached_input_tokens = 0
        self.cache_write_tokens = 0
        self.reasoning_tokens = 0
        self.usage_final = False
        self.complete = False
        self.content = False  # any text or tool call delivered

    def _choice(self, i: int) -> _ChoiceState:
        c = self.choices.get(i)
        if c is None:
            c = self.choices[i] = _ChoiceState()
        return c

    def text(self, text: str, choice: int = 0,
             logprobs: list[TokenLogprob] | None = None) -> TextDelta:
        c = self._choice(choice)
        c.text.append(text)
        if logprobs:
            c.logprobs = (c.logprobs or []) + logprobs
        self.content = True
        return TextDelta(choice=choice, text=text, logprobs=logprobs or None)

    def tool(self, index: int, id: str | None = None, name: str | None = None,
             arguments: str = "", choice: int = 0) -> ToolCallDelta:
        call = self._choice(choice).calls.setdefault(index, [None, None, []])
        call[0] = call[0] or id
        call[1] = call[1] or name
        if arguments:
            call[2].append(arguments)
        self.content = True
        return ToolCallDelta(choice=choice, index=index, id=id, name=name, arguments=arguments)

    def finish(self, reason: str, choice: int = 0) -> Finish:
        self._choice(choice).finish = reason
        return Finish(choice=choice, finish_reason=reason)

    def _built(self) -> list[Choice]:
        out = []
        for i in sorted(self.choices) or [0]:
            c = self.choices.get(i) or _ChoiceState()
            calls = [ToolCall(id=cid or f"call_{i}_{k}", function=FunctionCall(
                name=name or "", arguments="".join(args) or "{}"))
                for k, (cid, name, args) in sorted(c.calls.items())] or None
            finish = c.finish or "other"
            if calls and finish == "stop":
                finish = "tool_calls"
            out.append(Choice(index=i, text="".join(c.text), tool_calls=calls,
                              finish_reason=finish, logprobs=c.logprobs))  # type: ignore[arg-type]
        return out

    def result(self, latency_s: float, first_token_s: float | None) -> Result:
        """The Result so far: usage as reported, estimated (and marked) where it is missing."""
        choices = self._built()
        estimated = not self.usage_final
        tin, tout = self.input_tokens, self.output_tokens
        if tin is None:
            c = self.completion
            tin = estimate_messages(c.messages) + estimate_tools(c.tools)
        if estimated:
            received = sum(estimate_tokens(ch.text) + sum(
                estimate_tokens(t.function.name) + estimate_tokens(t.function.arguments)
                for t in ch.tool_calls or ()) for ch in choices)
            tout = max(tout or 0, received + self.reasoning_tokens)
        tout = tout or 0
        cached = min(self.cached_input_tokens, tin)
        write = min(self.cache_write_tokens, tin - cached)
        spec, first = self.spec, choices[0]
        return Result(
            provider=spec.name, model=spec.model, text=first.text, input_tokens=tin,
            output_tokens=tout, finish_reason=first.finish_reason, latency_s=max(latency_s, 0.0),
            raw_id=self.raw_id, cost_usd=cost_usd(spec, tin, tout, cached, write),
            cached_input_tokens=cached, cache_write_tokens=write,
            reasoning_tokens=min(self.reasoning_tokens, tout), usage_estimated=estimated,
            tool_calls=first.tool_calls, logprobs=first.logprobs,
            choices=choices if len(choices) > 1 else None, first_token_s=first_token_s)


def json_event(data: str) -> dict[str, Any]:
    """The JSON object in one event's data; an object in the vendor's error shape (an
    `error` member, which all three use) raises ErrorEvent, anything else BadBody."""
    try:
        obj = json.loads(data)
    except ValueError:
        raise BadBody(f"not JSON: {data[:80]!r}") from None
    if not isinstance(obj, dict):
        raise BadBody(f"a JSON {type(obj).__name__}, not an object")
    if "error" in obj:
        raise ErrorEvent(data.encode())
    return obj


class StreamParser(ABC):
    """One wire format's stream events into normalized ones, recorded in `state`.

    `feed` raises BadBody for an event it cannot use and ErrorEvent for the provider's own
    error event (actors/clients/faults.py); it sets `state.complete` on the final event.
    """

    def __init__(self, spec: ProviderSpec, completion: Completion) -> None:
        self.state = StreamState(spec, completion)

    @abstractmethod
    def feed(self, event: str, data: str) -> list[TextDelta | ToolCallDelta | Finish]:
        """The normalized events in one SSE event (`event` is its name, "" if none)."""

    @abstractmethod
    def at_end(self) -> None:
        """Called when the body ended; formats without a final marker complete here."""


def events_of(result: Result) -> list[TextDelta | ToolCallDelta | Finish | Done]:
    """A whole answer as stream events (a server that answered a stream request in one piece)."""
    out: list[Any] = []
    for ch in result.choices or [Choice(index=0, text=result.text, tool_calls=result.tool_calls,
                                        finish_reason=result.finish_reason,  # type: ignore[arg-type]
                                        logprobs=result.logprobs)]:
        if ch.text:
            out.append(TextDelta(choice=ch.index, text=ch.text, logprobs=ch.logprobs))
        for k, call in enumerate(ch.tool_calls or ()):
            out.append(ToolCallDelta(choice=ch.index, index=k, id=call.id,
                                     name=call.function.name, arguments=call.function.arguments))
        out.append(Finish(choice=ch.index, finish_reason=ch.finish_reason))
    out.append(Done(result=result))
    return out
