"""OpenAI Chat Completions on top of the router: request → `RouteRequest`, result → ChatCompletion.

`model` names a provider (pinned) or a policy alias; `auto` is the configured default policy.
Router-only options travel in the body next to the OpenAI ones (the SDK's `extra_body`):
`fallbacks`, `context`, `output`, `request_id`, `priority`, `timeout`, and for cost-aware
`quality_target` / `outcome_value_usd`, plus `explore` (false: never an exploratory choice).

Every OpenAI parameter the router can honour is passed through to the providers that
support it (`stop`, `top_p`, `seed`, penalties, `logprobs`, `n`, `tools`, `tool_choice`,
`parallel_tool_calls`, `response_format`, `user`); a provider that cannot is excluded for the
request, and a request no provider can honour is a 400 naming the parameter. Router
extension: `thinking_budget`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actors.clients.base import (
    PARAMS,
    Message,
    ResponseFormat,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolChoice,
)
from actors.config import Config
from actors.core.contexts import check_context
from actors.policy.policies import POLICIES
from actors.routing.route import ChoiceOptions, RouteRequest, RouteResult
from actors.rpc.messages import OutputKind
from serve.errors import ApiError, bad_request

AUTO = "auto"
#: JSON types taken as they are, as the OpenAI API does: `"stream": "yes"` or
#: `"max_tokens": "5"` is a 400 naming the parameter, not a guess.
STRICT = ConfigDict(extra="forbid", strict=True)

#: `owned_by` of a provider the built-in simulator answers for (made-up answers).
SIMULATOR_OWNER = "llm-router-simulator"
#: OpenAI parameters accepted and ignored because they do not change the answer.
IGNORED = ("metadata", "store", "service_tier")
_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter",
           "tool_calls": "tool_calls"}


class TextPart(BaseModel):
    model_config = STRICT

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message; `developer` is OpenAI's newer name for `system`. An assistant message
    may call tools (`tool_calls`, content null); a `tool` message answers one by id."""

    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(
        None, description="Text, or a list of text parts; null only with tool_calls.")
    name: str | None = Field(None, description="Accepted and ignored.")
    tool_calls: list[ToolCall] | None = Field(None, description="Assistant: tools it called.")
    tool_call_id: str | None = Field(None, min_length=1, description="Tool: the call answered.")
    refusal: str | None = Field(None, description="Accepted and ignored (assistant echoes).")

    def text(self) -> str | None:
        if self.content is None or isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def message(self, index: int) -> Message:
        """The router's Message; a shape error names `messages[index]`."""
        try:
            return Message(role="system" if self.role == "developer" else self.role,
                           content=self.text(), tool_calls=self.tool_calls,
                           tool_call_id=self.tool_call_id)
        except ValueError as exc:  # pydantic's ValidationError: say which message
            first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
            msg = str(first.get("msg", exc)).removeprefix("Value error, ")
            raise bad_request(f"messages[{index}]: {msg}", f"messages[{index}]") from None


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = False


class ChatRequest(ChoiceOptions):
    """The subset of OpenAI's request the router can honour; anything else is refused by name."""

    model_config = STRICT

    model: str = Field(min_length=1, description="Provider name or policy alias.")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=16, description="Choices to generate (providers cap it).")
    user: str | None = Field(None, min_length=1, max_length=128,
                             description="End user or desk: audit rows, costs by user, metrics.")
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    thinking_budget: int | None = Field(None, ge=-1, description="Router extension: thinking "
                                        "tokens (-1 the model decides, 0 off).")
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # router extensions
    fallbacks: list[str] | None = Field(None, description="Provider order to try.")
    context: dict[str, str] = Field(default_factory=dict, description="task, regime, timeframe…")
    output: OutputKind = "text"
    request_id: str | None = Field(None, min_length=1, max_length=128)
    priority: Literal["live", "batch"] = "live"
    timeout: float | None = Field(None, gt=0, description="Seconds until the deadline.")

    @field_validator("context")
    @classmethod
    def _context(cls, v: dict[str, str]) -> dict[str, str]:
        return check_context(v)

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if all(m.role in ("system", "developer") for m in v):
            raise ValueError("needs at least one user or assistant message")
        return v

    @property
    def out_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def resolve_model(model: str, config: Config) -> tuple[str | None, str | None]:
    """`(provider, policy)` for a model name; 404 naming the choices if it is neither."""
    if model in config.names:
        return model, None
    if model == AUTO:
        return None, None
    if model in POLICIES:
        return None, model
    raise ApiError(404, "invalid_request_error", f"unknown model {model!r}: use a provider "
                   f"({', '.join(config.names)}) or a policy alias "
                   f"({', '.join([AUTO, *POLICIES])})", "model", "model_not_found")


def to_route(req: ChatRequest, config: Config, token_limit: int,
             timeout: float | None) -> RouteRequest:
    provider, policy = resolve_model(req.model, config)
    out = req.out_tokens
    if out is not None and out > token_limit:
        param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        raise bad_request(f"{param} {out} is above the limit {token_limit}", param,
                          "max_tokens_too_large")
    for i, name in enumerate(req.fallbacks or []):
        if name not in config.names:
            raise bad_request(f"unknown provider {name!r} in fallbacks; configured: "
                              f"{', '.join(config.names)}", f"fallbacks[{i}]")
    if req.stream_options is not None and not req.stream:
        raise bad_request("stream_options: only with stream true", "stream_options")
    messages = [m.message(i) for i, m in enumerate(req.messages)]
    params = {name: value for name, default in PARAMS.items()  # only what the body set
              if name in ChatRequest.model_fields and (value := getattr(req, name)) != default}
    return RouteRequest(**params, messages=messages, policy=policy, provider=provider,
                        fallbacks=req.fallbacks, context=req.context, max_tokens=out,
                        temperature=req.temperature, timeout=timeout, output=req.output,
                        request_id=req.request_id, priority=req.priority,
                        quality_target=req.quality_target,
                        outcome_value_usd=req.outcome_value_usd, explore=req.explore)


def router_extra(r: RouteResult) -> dict[str, Any]:
    """The routing trace and cost, in a field OpenAI clients ignore."""
    return {"provider": r.provider, "model": r.model, "policy": r.trace.policy,
            "cost_usd": r.cost_usd, "latency_s": r.latency_s, "parsed": r.parsed,
            "trace": r.trace.model_dump(mode="json")}


def finish_reason(reason: str) -> str:
    return _FINISH.get(reason, "stop")


def logprobs_body(items: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """OpenAI's `choices[].logprobs` object."""
    if items is None:
        return None
    return {"content": [{"token": t.token, "logprob": t.logprob,
                         "bytes": list(t.token.encode()),
                         "top_logprobs": [{"token": a.token, "logprob": a.logprob,
                                           "bytes": list(a.token.encode())}
                                          for a in t.top_logprobs]} for t in items],
            "refusal": None}


def message_body(text: str, tool_calls: list[ToolCall] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls
                           else None, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = [c.model_dump(mode="json") for c in tool_calls]
    return msg


def choices_body(r: RouteResult) -> list[dict[str, Any]]:
    if r.choices:
        return [{"index": c.index, "logprobs": logprobs_body(c.logprobs),
                 "finish_reason": finish_reason(c.finish_reason),
                 "message": message_body(c.text, c.tool_calls)} for c in r.choices]
    return [{"index": 0, "logprobs": logprobs_body(r.logprobs),
             "finish_reason": finish_reason(r.finish_reason),
             "message": message_body(r.text, r.tool_calls)}]


def completion(r: RouteResult) -> dict[str, Any]:
    """A ChatCompletion object; `model` is the provider that answered."""
    return {
        "id": f"chatcmpl-{r.request_id}", "object": "chat.completion",
        "created": int(time.time()), "model": r.provider, "system_fingerprint": None,
        "choices": choices_body(r), "usage": usage(r), "router": router_extra(r),
    }


def usage(r: RouteResult) -> dict[str, Any]:
    """OpenAI's usage object, with cached prompt and reasoning tokens in the details."""
    u = r.usage
    return {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens if u else 0},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens if u else 0}}


def models(config: Config, created: int) -> dict[str, Any]:
    """`GET /v1/models`: every enabled provider, then the policy aliases."""
    data: list[dict[str, Any]] = []
    for p in config.providers:
        if p.enabled:
            owner = SIMULATOR_OWNER if config.simulated(p) else p.api
            data.append({"id": p.name, "object": "model", "created": created, "owned_by": owner,
                         "kind": "provider", "model": p.model,
                         "context_window": p.max_input_tokens,
                         "max_output_tokens": p.max_output_tokens,
                         "simulated": config.simulated(p)})
    for alias in (AUTO, *POLICIES):
        data.append({"id": alias, "object": "model", "created": created, "owned_by": "llm-router",
                     "kind": "policy"})
    return {"object": "list", "data": data}
