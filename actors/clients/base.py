"""What every wire client takes and returns, whatever the provider's JSON looks like.

OpenAI's chat shape is the lingua franca: assistant `tool_calls`, `tool` messages answering
them by `tool_call_id`, `response_format`, `tool_choice`. Each wire client maps it to and
from its own format (actors/clients/anthropic.py, gemini.py, openai.py).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from actors.clients.schema import check_schema

#: Tool and schema names every format accepts: OpenAI and Anthropic allow [a-zA-Z0-9_-]{1,64};
#: Gemini also wants a letter or underscore first.
NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$"
# Tools, tool calls and formats are strict (JSON types as given, like the OpenAI API):
# `"strict": "yes"` in a tool is an error naming it, not a guess.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]


class FunctionCall(BaseModel):
    """The function a model called and its arguments, as JSON text (OpenAI's shape)."""

    model_config = ConfigDict(frozen=True, strict=True)

    name: str = Field(description="The tool's name.")
    arguments: str = Field(description="The arguments as a JSON text, usually an object.")


class ToolCall(BaseModel):
    """One tool call in an assistant message or a result."""

    model_config = ConfigDict(frozen=True, strict=True)

    id: str = Field(min_length=1, description="Answered by a tool message's tool_call_id.")
    type: Literal["function"] = "function"
    function: FunctionCall

    def args(self) -> dict[str, Any] | None:
        """The arguments as a JSON object, or None if they are not one."""
        try:
            value = json.loads(self.function.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class Message(BaseModel):
    """One chat message in the OpenAI-style shape every caller uses."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Who speaks.")
    content: str | None = Field(
        default=None, description="The text; null only in an assistant message calling tools.")
    tool_calls: list[ToolCall] | None = Field(
        default=None, description="Tools the assistant called (assistant messages only).")
    tool_call_id: str | None = Field(
        default=None, description="The call this tool message answers (tool messages only).")

    @model_validator(mode="after")
    def _shape(self) -> Message:
        if self.tool_calls is None and self.tool_call_id is None and self.content is not None \
                and self.role != "tool":
            return self  # plain text: the common case, on every request's path
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls: only assistant messages call tools")
        if self.role == "tool":
            if not self.tool_call_id:
                raise ValueError("tool_call_id: a tool message must name the call it answers")
        elif self.tool_call_id is not None:
            raise ValueError("tool_call_id: only tool messages answer a tool call")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: may be null only in an assistant message with tool_calls")
        return self


class FunctionDef(BaseModel):
    """A function the model may call; `parameters` is a JSON Schema for its arguments."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits, _ or -; 64 at most.")
    description: str | None = Field(default=None, description="What it does, for the model.")
    parameters: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the arguments (an object); none = no arguments.")
    strict: bool | None = Field(default=None, description="Ask for exact schema adherence.")

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            check_schema(v)
            if v.get("type", "object") != "object":
                raise ValueError("must be a JSON Schema of type 'object'")
        return v

    def schema_or_empty(self) -> dict[str, Any]:
        return self.parameters if self.parameters is not None else EMPTY_OBJECT


EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


class Tool(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionDef


class ToolName(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    name: str


class NamedToolChoice(BaseModel):
    """Call this one tool."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    type: Literal["function"] = "function"
    function: ToolName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(BaseModel):
    """OpenAI's `response_format.json_schema`: the answer must be JSON valid for `schema`."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN, description="The schema's name.")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema.")
    strict: bool | None = Field(default=None, description="Ask for exact schema adherence.")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_schema(v)
        return v


class ResponseFormat(BaseModel):
    """`text` (the default), any JSON object, or JSON valid for a schema."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema: required when type is 'json_schema'")
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f"json_schema: only with type 'json_schema', not {self.type!r}")
        return self

    @property
    def is_json(self) -> bool:
        return self.type != "text"

    @property
    def schema_dict(self) -> dict[str, Any] | None:
        """The JSON Schema of a json_schema format, else None."""
        return self.json_schema.schema_ if self.json_schema is not None else None


class Completion(BaseModel):
    """A provider-neutral completion request (one attempt's payload).

    Every optional parameter is None when the caller did not set it; the wire clients send
    only what is set. Which providers honour which parameter: actors/clients/capabilities.py.
    """

    messages: list[Message] = Field(
        min_length=1, description="The conversation; system first if any."
    )
    max_tokens: int | None = Field(
        default=None, gt=0, description="Output cap; defaults to the provider's max_output_tokens."
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Sampling temperature."
    )
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Nucleus sampling.")
    stop: list[str] | None = Field(
        default=None, min_length=1, max_length=16, description="Stop sequences (a string is one).")
    seed: int | None = Field(default=None, description="Seed for reproducible sampling.")
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="The end user or desk; recorded on the audit row (sent where accepted).")
    logprobs: bool | None = Field(default=None, description="Return token log probabilities.")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="Alternatives per token (needs logprobs).")
    n: int = Field(default=1, ge=1, le=16, description="How many choices to generate.")
    tools: list[Tool] | None = Field(
        default=None, min_length=1, max_length=128, description="Tools the model may call.")
    tool_choice: ToolChoice | None = Field(
        default=None, description="none, auto, required, or one named tool.")
    parallel_tool_calls: bool | None = Field(
        default=None, description="False: at most one tool call per answer.")
    response_format: ResponseFormat | None = Field(
        default=None, description="text, json_object or json_schema.")
    thinking_budget: int | None = Field(
        default=None, ge=-1, description="Thinking tokens: -1 the model decides, 0 off; "
        "overrides the provider's configured budget.")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not s for s in v):
            raise ValueError("stop sequences must not be empty strings")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("needs logprobs true")
        return v

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, v: list[Tool] | None) -> list[Tool] | None:
        if v is not None and len({t.function.name for t in v}) != len(v):
            raise ValueError("two tools have the same name")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _choice_in_tools(cls, v: ToolChoice | None, info: ValidationInfo) -> ToolChoice | None:
        tools = info.data.get("tools")
        if v is not None and v != "none" and not tools:
            raise ValueError("needs tools")
        if isinstance(v, NamedToolChoice) and v.function.name not in {
                t.function.name for t in tools or ()}:
            raise ValueError(f"names {v.function.name!r}, which is not in tools")
        return v

    @field_validator("parallel_tool_calls")
    @classmethod
    def _parallel_needs_tools(cls, v: bool | None, info: ValidationInfo) -> bool | None:
        if v is not None and not info.data.get("tools"):
            raise ValueError("needs tools")
        return v

    @field_validator("messages")
    @classmethod
    def _tool_results_answer_calls(cls, v: list[Message]) -> list[Message]:
        called: set[str] = set()
        for i, m in enumerate(v):
            if m.role == "tool" and m.tool_call_id not in called:
                raise ValueError(f"[{i}].tool_call_id {m.tool_call_id!r} answers no earlier "
                                 "assistant tool call")
            called.update(call.id for call in m.tool_calls or ())
        return v

    @property
    def wants_json(self) -> bool:
        return self.response_format is not None and self.response_format.is_json

    def tool_name(self, call_id: str) -> str | None:
        """The function name of an earlier tool call (Gemini answers calls by name)."""
        for m in self.messages:
            for call in m.tool_calls or ():
                if call.id == call_id:
                    return call.function.name
        return None


#: Completion parameters beyond messages, max_tokens and temperature, with their defaults
#: (what a RouteRequest passes through and an idempotency fingerprint covers).
PARAMS: dict[str, Any] = {name: f.default for name, f in Completion.model_fields.items()
                          if name not in ("messages", "max_tokens", "temperature")}


class TopLogprob(BaseModel):
    token: str
    logprob: float


class TokenLogprob(BaseModel):
    """One output token's log probability and its most likely alternatives."""

    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class Choice(BaseModel):
    """One of n answers; the Result's top-level fields mirror choice 0."""

    index: int = Field(ge=0)
    text: str = ""
    tool_calls: list[ToolCall] | None = None
    finish_reason: FinishReason = "stop"
    logprobs: list[TokenLogprob] | None = None


class Result(BaseModel):
    """The normalized answer of one successful attempt.

    Token counts are as the vendor bills them: `input_tokens` is the whole prompt, cache
    reads and writes included; `output_tokens` includes thinking tokens.
    """

    provider: str = Field(description="Configured provider name that answered.")
    model: str = Field(description="Vendor model id.")
    text: str = Field(description="The assistant's text (choice 0); JSON for a JSON format.")
    input_tokens: int = Field(ge=0, description="Prompt tokens, cached ones included.")
    output_tokens: int = Field(ge=0, description="Completion tokens, thinking included.")
    finish_reason: str = Field(
        description="Normalized: stop, length, tool_calls, content_filter or other.")
    latency_s: float = Field(ge=0.0, description="Wall time of the HTTP attempt.")
    raw_id: str = Field(default="", description="The provider's response id.")
    cost_usd: float = Field(default=0.0, ge=0.0, description="From the price table and usage.")
    cached_input_tokens: int = Field(default=0, ge=0, description="Prompt tokens read from cache.")
    cache_write_tokens: int = Field(default=0, ge=0, description="Prompt tokens written to cache.")
    reasoning_tokens: int = Field(default=0, ge=0, description="Thinking tokens (in output).")
    usage_estimated: bool = Field(
        default=False, description="Usage estimated from the tokens received (a cut stream).")
    tool_calls: list[ToolCall] | None = Field(default=None, description="Choice 0's tool calls.")
    logprobs: list[TokenLogprob] | None = Field(default=None, description="Choice 0's logprobs.")
    choices: list[Choice] | None = Field(default=None, description="Every choice when n > 1.")
    first_token_s: float | None = Field(
        default=None, description="Streams: seconds from the send to the first content event.")
