"""What a request asks for, whatever its wire format: the server-side mirror of the clients'
`build`. Pydantic validates and parses the JSON in one pass; unknown fields are ignored, as
the real APIs' newer fields would be by an older server. Gemini's: gemini_asks.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from actors.simulator.ask import Api, Ask, ToolDef, WireError, set_choice
from actors.simulator.gemini_asks import parse_gemini

__all__ = ["Api", "Ask", "ToolDef", "WireError", "parse"]


# ---- OpenAI ----


class _Part(BaseModel):
    type: str = "text"
    text: str = ""


class _Fn(BaseModel):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _OpenAITool(BaseModel):
    type: Literal["function"] = "function"
    function: _Fn


class _CallFn(BaseModel):
    name: str
    arguments: str = ""


class _OpenAICall(BaseModel):
    id: str = Field(min_length=1)
    function: _CallFn


class _OpenAIMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None
    tool_calls: list[_OpenAICall] | None = None
    tool_call_id: str | None = None


class _Named(BaseModel):
    name: str


class _OpenAIChoice(BaseModel):
    type: Literal["function"] = "function"
    function: _Named


class _JsonSchema(BaseModel):
    name: str = Field(min_length=1)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class _ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(BaseModel):
    include_usage: bool = False


class _OpenAIRequest(BaseModel):
    model: str = Field(min_length=1)
    messages: list[_OpenAIMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=128)
    seed: int | None = None
    random_seed: int | None = None  # Mistral's name
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | int | None = None  # Together: the number of alternatives
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[_OpenAITool] | None = None
    tool_choice: Literal["none", "auto", "required", "any"] | _OpenAIChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: _ResponseFormat | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None


def _text(content: str | list[Any] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(getattr(b, "text", "") or "" for b in content)


def _openai(body: bytes) -> Ask:
    o = _OpenAIRequest.model_validate_json(body)
    texts, system, called = [], [], set()
    for m in o.messages:  # one pass: this runs for every request
        text = _text(m.content)
        texts.append(text)
        if m.role in ("system", "developer"):
            system.append(text)
        if m.tool_calls:
            called.update(c.function.name for c in m.tool_calls)
    ask = Ask(o.model, "\n".join(texts), o.max_completion_tokens or o.max_tokens,
              stream=o.stream, n=o.n, seed=o.seed if o.seed is not None else o.random_seed,
              cache_prefix="\n".join(system), after_tool=o.messages[-1].role == "tool",
              called=called)
    if o.stream_options is not None:
        ask.include_usage = o.stream_options.include_usage
    if o.stop is not None:
        ask.stop = [o.stop] if isinstance(o.stop, str) else o.stop
    if o.logprobs:
        ask.logprobs = o.logprobs if o.logprobs is not True else (o.top_logprobs or 0)
    ask.penalties = bool(o.presence_penalty or o.frequency_penalty)
    if o.tools:
        ask.tools = [ToolDef(t.function.name, t.function.parameters) for t in o.tools]
    if o.tool_choice is not None:
        set_choice(ask, o.tool_choice if not isinstance(o.tool_choice, _OpenAIChoice)
                else o.tool_choice.function.name)
    if o.parallel_tool_calls is False:
        ask.parallel = False
    fmt = o.response_format
    if fmt is not None and fmt.type != "text":
        ask.json_mode = True
        if fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise WireError("response_format.json_schema.schema: required")
            ask.schema = fmt.json_schema.schema_
    return ask


# ---- Anthropic ----


class _Block(BaseModel):
    type: str = "text"
    text: str = ""
    name: str = ""
    content: str | list[_Part] | None = None
    cache_control: dict[str, Any] | None = None


class _AnthropicMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _AnthropicTool(BaseModel):
    name: str = Field(min_length=1)
    input_schema: dict[str, Any]


class _AnthropicChoice(BaseModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class _Thinking(BaseModel):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=1024)


class _Format(BaseModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class _OutputConfig(BaseModel):
    format: _Format | None = None


class _AnthropicRequest(BaseModel):
    model: str = Field(min_length=1)
    max_tokens: int = Field(gt=0)
    messages: list[_AnthropicMessage] = Field(min_length=1)
    system: str | list[_Block] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    stop_sequences: list[str] | None = None
    tools: list[_AnthropicTool] | None = None
    tool_choice: _AnthropicChoice | None = None
    thinking: _Thinking | None = None
    output_config: _OutputConfig | None = None
    stream: bool = False


def _blocks_text(content: str | list[_Block]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.text or _text(b.content) for b in content)


def _anthropic(body: bytes) -> Ask:
    a = _AnthropicRequest.model_validate_json(body)
    system = _blocks_text(a.system) if a.system else ""
    last = a.messages[-1].content
    ask = Ask(a.model, "\n".join([system] * bool(system) + [_blocks_text(m.content)
                                                           for m in a.messages]),
              a.max_tokens, stream=a.stream, stop=a.stop_sequences, cache_prefix=system,
              cache_marked=isinstance(a.system, list) and any(b.cache_control for b in a.system),
              after_tool=isinstance(last, list) and any(b.type == "tool_result" for b in last),
              called={b.name for m in a.messages if isinstance(m.content, list)
                      for b in m.content if b.type == "tool_use"})
    if a.thinking is not None and a.thinking.type == "enabled":
        budget = a.thinking.budget_tokens
        if budget is None or budget >= a.max_tokens:
            raise WireError("thinking.budget_tokens: must be >= 1024 and less than max_tokens")
        ask.thinking = budget
    if a.tools:
        ask.tools = [ToolDef(t.name, t.input_schema) for t in a.tools]
    if a.tool_choice is not None:
        tc = a.tool_choice
        set_choice(ask, tc.name if tc.type == "tool" else tc.type)
        ask.parallel = not tc.disable_parallel_tool_use
    if a.output_config is not None and a.output_config.format is not None:
        ask.json_mode, ask.schema = True, a.output_config.format.schema_
    return ask


def parse(api: Api, body: bytes, path_model: str | None = None) -> Ask:
    """Validate a request body; raise WireError with a short reason."""
    try:
        if api == "anthropic":
            return _anthropic(body)
        if api == "openai":
            return _openai(body)
        return parse_gemini(body, path_model or "")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "body"
        raise WireError(f"{where}: {err['msg']}") from None
