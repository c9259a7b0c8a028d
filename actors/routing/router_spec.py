"""The `router:` config section (typed in `Config`, validated once at load)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.policy.estimates import LearningSpec
from actors.policy.explore import ExplorationSpec

#: Settings of the first release, replaced by the learned estimates (README: Policies).
REMOVED = {"stats_ttl_s": "figures are learned in the router itself now",
           "prior_success": "see router.learning.prior_success",
           "prior_confidence": "confidence no longer enters the quality estimate",
           "prior_weight": "see router.learning.prior_weight",
           "cost_quality_margin": "cost-aware now trades quality for money with "
                                  "quality_target or outcome_value_usd"}


class RouterSpec(BaseModel):
    """The `router:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_policy: str = Field("accuracy-first", description="Policy when a request names none.")
    default_timeout_s: float = Field(120.0, gt=0, description="Deadline when a request gives none.")
    snapshot_refresh_s: float = Field(0.25, gt=0, description="Background snapshot refresh period.")
    expected_output_tokens: int = Field(
        400, gt=0, description="Output tokens assumed for a provider until it has answered.")
    quality_target: float = Field(
        0.95, gt=0, le=1, description="cost-aware: the share of the best single provider's "
                                      "outcome score to hold over the stream, at least cost.")
    outcome_value_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="cost-aware: USD a right answer (score 1) "
        "is worth; when set it is used instead of quality_target.")
    learning: LearningSpec = Field(default_factory=LearningSpec)
    exploration: ExplorationSpec = Field(default_factory=ExplorationSpec)
    seed: int | None = Field(None, description="Seed of the Thompson sampler (tests, replays).")
    store_text: bool = Field(True, description="Put prompt/response text on attempt records.")
    journal: bool = Field(True, description="Write-ahead journal of unacknowledged records.")
    journal_sync: bool | None = Field(
        None, description="Answer only once the request's records are committed to the "
        "journal (a group commit). Default: on with PostgreSQL (tracker.db_url), where it makes "
        "a node loss lose nothing answered; the file journal needs no wait.")
    journal_path: str | None = Field(
        None, description="Journal file; default: router-journal.jsonl next to the audit DB.")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, why in REMOVED.items():
                if key in data:
                    raise ValueError(f"router.{key} was removed: {why}")
        return data
