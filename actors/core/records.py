"""Records sent to the tracker: one per attempt and one per request.

They cross actor boundaries and land in the audit database, so they are pydantic models
with a stable field set; the audit table's columns are these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AttemptRecord(BaseModel):
    """One HTTP call to one provider."""

    kind: Literal["attempt"] = "attempt"
    request_id: str = Field(description="The request this attempt belongs to.")
    attempt: int = Field(ge=1, description="1-based attempt number within the request.")
    ts: float = Field(description="Unix time the attempt finished.")
    provider: str = Field(description="Configured provider name.")
    model: str = Field(description="Vendor model id.")
    policy: str = Field(default="", description="Policy that chose the provider.")
    context: dict[str, str] = Field(default_factory=dict, description="Caller context (task, regime...).")
    ok: bool = Field(description="Whether the attempt produced a valid answer.")
    error_class: str | None = Field(default=None, description="ErrorClass value when not ok.")
    error: str | None = Field(default=None, description="Short error message (no secrets).")
    status: int | None = Field(default=None, description="HTTP status when there was one.")
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    latency_s: float = Field(default=0.0, ge=0)
    confidence: float | None = Field(default=None, ge=0, le=1, description="Answer's own confidence.")
    prompt: str | None = Field(default=None, description="Prompt text, or its HMAC when hashing.")
    response: str | None = Field(default=None, description="Response text, or its HMAC.")
    simulated: bool = Field(default=False, description="Answered by the built-in simulator.")
    execution: str = Field(default="", description="Which execution of the request made this "
                           "attempt: a request retried after its router died is not "
                           "mistaken for a re-sent copy of the first one.")
    user: str | None = Field(default=None, description="The request's end user, desk or "
                             "strategy (costs can be grouped by it).")
    cached_input_tokens: int = Field(default=0, ge=0, description="Input read from the "
                                     "provider's cache (priced at its cached rate).")
    cache_write_tokens: int = Field(default=0, ge=0, description="Input written to the cache.")
    reasoning_tokens: int = Field(default=0, ge=0, description="Thinking tokens (in output).")
    usage_estimated: bool = Field(default=False, description="Usage estimated from what was "
                                  "received (a stream cut before the provider's usage event).")


class RequestRecord(BaseModel):
    """The terminal outcome of one request (exactly one per request id)."""

    kind: Literal["request"] = "request"
    request_id: str
    ts: float
    policy: str = ""
    context: dict[str, str] = Field(default_factory=dict)
    provider: str | None = Field(default=None, description="Provider that answered, if any.")
    model: str | None = None
    ok: bool
    error_class: str | None = None
    error: str | None = None
    attempts: int = Field(ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0)
    latency_s: float = Field(default=0.0, ge=0)
    confidence: float | None = Field(default=None, ge=0, le=1)
    quality_target: float | None = Field(
        default=None, description="cost-aware: the quality target the choice was priced by.")
    explored: bool = Field(default=False, description="The choice was exploratory.")
    simulated: bool = Field(default=False, description="Answered by the built-in simulator.")
    user: str | None = Field(default=None, description="The request's end user or desk.")
    cached: bool = Field(default=False, description="Answered from the response cache: no "
                         "attempt, nothing paid (cost_usd 0).")
    saved_usd: float = Field(default=0.0, ge=0, description="A cached answer: what it cost "
                             "when it was paid (not paid again).")


class FeedbackRecord(BaseModel):
    """A realized outcome attached to a past request (e.g. 1.0 the trade call was right)."""

    kind: Literal["feedback"] = "feedback"
    request_id: str
    ts: float
    score: float = Field(ge=0, le=1)


class WarningRecord(BaseModel):
    """An operational warning worth keeping next to the audit trail (e.g. a budget's
    soft limit crossed)."""

    kind: Literal["warning"] = "warning"
    ts: float
    scope: str = Field(description="What it is about: '*' (global) or a provider name.")
    message: str
