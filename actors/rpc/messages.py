"""Messages between the router and provider actors (the hot path: keep them compact)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from actors.clients.base import Completion, Result
from actors.core.records import AttemptRecord

OutputKind = Literal["text", "trade_signal", "risk_assessment"]


class ProviderCall(BaseModel):
    """What the router asks one provider actor to do for one request."""

    request_id: str
    completion: Completion
    deadline: float | None = Field(default=None, description="Unix time after which to give up.")
    output: OutputKind = Field(default="text", description="Structured output to validate, if any.")
    attempt_offset: int = Field(default=0, ge=0, description="Attempts already made elsewhere.")
    priority: Literal["live", "batch"] = Field(default="live", description="Queueing lane.")
    execution: str = Field(default="", description="Which execution of the request this is "
                           "(part of each attempt record's key).")
    reserved_usd: float = Field(default=0.0, ge=0, description="The router's budget reservation "
                                "for this call: a restarted router books what its predecessor "
                                "left in flight (ProviderActor.pending_usd).")
    # Streams only: what the provider needs to record an attempt its caller abandoned.
    policy: str = Field(default="", description="The routing policy (streams).")
    context: dict[str, str] = Field(default_factory=dict, description="Record context (streams).")
    user: str | None = Field(default=None, description="The request's user (streams).")


class AttemptInfo(BaseModel):
    """One HTTP attempt as the provider saw it; the router turns it into an AttemptRecord."""

    attempt: int
    ts: float
    ok: bool
    error_class: str | None = None
    error: str | None = None
    status: int | None = None
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    confidence: float | None = None
    response: str | None = None
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False

    def record(self, request_id: str, provider: str, model: str, **extra: Any) -> AttemptRecord:
        """The audit row for this attempt (`extra`: policy, context, prompt, response...)."""
        return AttemptRecord(
            request_id=request_id, attempt=self.attempt, ts=self.ts, provider=provider,
            model=model, ok=self.ok, error_class=self.error_class, error=self.error,
            status=self.status, input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            cost_usd=self.cost_usd, latency_s=self.latency_s, confidence=self.confidence,
            cached_input_tokens=self.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens, reasoning_tokens=self.reasoning_tokens,
            usage_estimated=self.usage_estimated, **extra)

    @classmethod
    def billed(cls, result: Any, **fields: Any) -> AttemptInfo:
        """An attempt that reached the provider: its usage and cost as billed (a
        clients.base.Result, or None when nothing came back)."""
        if result is None:
            return cls(**fields)
        return cls(input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                   cost_usd=result.cost_usd, cached_input_tokens=result.cached_input_tokens,
                   cache_write_tokens=result.cache_write_tokens,
                   reasoning_tokens=result.reasoning_tokens,
                   usage_estimated=result.usage_estimated, response=result.text, **fields)


class ProviderReply(BaseModel):
    """Outcome of a ProviderCall: a result or a classified error, plus every attempt made."""

    provider: str
    model: str
    result: Result | None = None
    parsed: Any = Field(default=None, description="Validated structured output (JSON value).")
    error_class: str | None = None
    error: str | None = None
    status: int | None = None
    retry_after: float | None = None
    attempts: list[AttemptInfo] = Field(default_factory=list)
    snapshot: dict[str, Any] | None = Field(default=None, description="Fresh snapshot if it changed.")
    simulated: bool = Field(default=False, description="Answered by the built-in simulator (the "
                            "provider actor decided this where it read its key).")
