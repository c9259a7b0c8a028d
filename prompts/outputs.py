"""What a model must answer: the structured outputs of the prompt tasks.

Their JSON schema is embedded in the system prompt, and `prompts.parse.parse_output` validates
answers against them. Unknown keys are *ignored*, not rejected: a model that adds a harmless
`"notes"` field gave a usable answer, and rejecting it would cost a paid retry. Required fields,
ranges and the price ordering are enforced.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_OUTPUT = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class TradeSignal(BaseModel):
    """A directional call with its levels (answer to the `analysis` and `pattern` tasks)."""

    model_config = _OUTPUT

    direction: Literal["long", "short", "flat"] = Field(description="Trade to take; flat = none.")
    confidence: float = Field(ge=0, le=1, description="Probability-like confidence, 0..1.")
    entry: float | None = Field(default=None, gt=0, description="Entry price, if any.")
    stop: float | None = Field(default=None, gt=0, description="Protective stop price, if any.")
    take_profit: float | None = Field(default=None, gt=0, description="Profit target, if any.")
    horizon: str = Field(min_length=1, description="Expected holding period, e.g. '3-5 days'.")
    rationale: str = Field(
        min_length=1, description="Short reasoning, citing the context's numbers."
    )

    @model_validator(mode="after")
    def _levels_in_order(self) -> TradeSignal:
        """A long's stop sits below entry and its target above; a short's the other way round."""
        if self.direction == "flat" or self.entry is None:
            return self
        sign = 1 if self.direction == "long" else -1
        if self.stop is not None and sign * (self.entry - self.stop) <= 0:
            side = "below" if sign > 0 else "above"
            raise ValueError(
                f"stop {self.stop} must be {side} entry {self.entry} for a {self.direction}"
            )
        if self.take_profit is not None and sign * (self.take_profit - self.entry) <= 0:
            side = "above" if sign > 0 else "below"
            raise ValueError(
                f"take_profit {self.take_profit} must be {side} entry {self.entry} for a {self.direction}"
            )
        return self


class RiskAssessment(BaseModel):
    """How much risk a position carries and how large it may be (answer to the `risk` task)."""

    model_config = _OUTPUT

    risk_score: float = Field(ge=0, le=1, description="0 = negligible, 1 = extreme.")
    max_position_size: float = Field(
        ge=0, description="Largest size (units) the risk budget allows."
    )
    stop_distance: float = Field(
        ge=0, description="Recommended entry-to-stop distance, price units."
    )
    warnings: list[str] = Field(default_factory=list, description="Concrete risks to watch.")
