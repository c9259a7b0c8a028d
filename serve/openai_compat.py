"""OpenAI Chat Completions on top of the router: request → `RouteRequest`, result → ChatCompletion.

`model` names a provider (pinned) or a policy alias; `auto` is the configured default policy.
Router-only options travel in the body next to the OpenAI ones (the SDK's `extra_body`):
`fallbacks`, `context`, `output`, `request_id`, `priority`, `timeout`, and for cost-aware
`quality_target` / `outcome_value_usd`, plus `explore` (false: never an exploratory choice).

Streaming sends the answer as OpenAI-style server-sent events once the router has it: the
router does not stream tokens from providers, so the first chunk arrives with the whole answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actors.clients.base import Message
from actors.config import Config
from actors.contexts import check_context
from actors.messages import OutputKind
from actors.policies import POLICIES
from actors.route import ChoiceOptions, RouteRequest, RouteResult
from serve.errors import ApiError, bad_request

AUTO = "auto"
#: JSON types taken as they are, as the OpenAI API does: `"stream": "yes"` or
#: `"max_tokens": "5"` is a 400 naming the parameter, not a guess.
STRICT = ConfigDict(extra="forbid", strict=True)

#: `owned_by` of a provider the built-in simulator answers for (made-up answers).
SIMULATOR_OWNER = "llm-router-simulator"
#: OpenAI parameters accepted and ignored because they do not change the answer.
IGNORED = ("metadata", "seed", "store", "service_tier")
STREAM_CHUNK_CHARS = 256
_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter"}


class TextPart(BaseModel):
    model_config = STRICT

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message; `developer` is OpenAI's newer name for `system`."""

    model_config = STRICT

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Text, or a list of text parts.")
    name: str | None = Field(None, description="Accepted and ignored.")

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


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
    n: int = Field(1, ge=1, le=1, description="Only one choice is supported.")
    user: str | None = Field(None, max_length=128, description="End user, for per-user metrics.")
    metadata: dict[str, str] | None = None
    seed: int | None = None
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
    messages = [Message(role="system" if m.role == "developer" else m.role, content=m.text())
                for m in req.messages]
    return RouteRequest(messages=messages, policy=policy, provider=provider,
                        fallbacks=req.fallbacks, context=req.context, max_tokens=out,
                        temperature=req.temperature, timeout=timeout, output=req.output,
                        request_id=req.request_id, priority=req.priority,
                        quality_target=req.quality_target,
                        outcome_value_usd=req.outcome_value_usd, explore=req.explore,
                        user=req.user)


def router_extra(r: RouteResult) -> dict[str, Any]:
    """The routing trace and cost, in a field OpenAI clients ignore."""
    return {"provider": r.provider, "model": r.model, "policy": r.trace.policy,
            "cost_usd": r.cost_usd, "latency_s": r.latency_s, "parsed": r.parsed,
            "trace": r.trace.model_dump(mode="json")}


def completion(r: RouteResult) -> dict[str, Any]:
    """A ChatCompletion object; `model` is the provider that answered."""
    return {
        "id": f"chatcmpl-{r.request_id}", "object": "chat.completion",
        "created": int(time.time()), "model": r.provider, "system_fingerprint": None,
        "choices": [{"index": 0, "logprobs": None,
                     "finish_reason": _FINISH.get(r.finish_reason, "stop"),
                     "message": {"role": "assistant", "content": r.text, "refusal": None}}],
        "usage": usage(r), "router": router_extra(r),
    }


def usage(r: RouteResult) -> dict[str, int]:
    return {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens}


def stream_events(r: RouteResult, include_usage: bool) -> Iterator[str]:
    """Server-sent events as OpenAI sends them: role, content pieces, finish, [usage], [DONE]."""
    base = {"id": f"chatcmpl-{r.request_id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": r.provider, "system_fingerprint": None}

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    yield event({"role": "assistant", "content": ""})
    for i in range(0, len(r.text), STREAM_CHUNK_CHARS):
        yield event({"content": r.text[i:i + STREAM_CHUNK_CHARS]})
    yield event({}, _FINISH.get(r.finish_reason, "stop"), router=router_extra(r))
    if include_usage:
        chunk = {**base, "choices": [], "usage": usage(r)}
        yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
    yield "data: [DONE]\n\n"


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
