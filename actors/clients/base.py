"""What every wire client takes and returns, whatever the provider's JSON looks like."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """One chat message in the OpenAI-style shape every caller uses."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="The text of the message.")


class Completion(BaseModel):
    """A provider-neutral completion request (one attempt's payload)."""

    messages: list[Message] = Field(
        min_length=1, description="The conversation; system first if any."
    )
    max_tokens: int | None = Field(
        default=None, gt=0, description="Output cap; defaults to the provider's max_output_tokens."
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Sampling temperature."
    )


class Result(BaseModel):
    """The normalized answer of one successful attempt."""

    provider: str = Field(description="Configured provider name that answered.")
    model: str = Field(description="Vendor model id.")
    text: str = Field(description="The assistant's text.")
    input_tokens: int = Field(ge=0, description="Prompt tokens as reported by the provider.")
    output_tokens: int = Field(ge=0, description="Completion tokens as reported by the provider.")
    finish_reason: str = Field(description="Normalized: stop, length, content_filter or other.")
    latency_s: float = Field(ge=0.0, description="Wall time of the HTTP attempt.")
    raw_id: str = Field(default="", description="The provider's response id.")
    cost_usd: float = Field(default=0.0, ge=0.0, description="From the price table and usage.")
