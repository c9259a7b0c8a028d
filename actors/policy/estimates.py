"""The learner's settings and the state it keeps per provider and context: decayed sums,
and what a decision reads from them (actors/policy/learning.py explains the model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from actors.core.contexts import ContextKey


class LearningSpec(BaseModel):
    """`router.learning`: how estimates learn and forget (defaults suit most uses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_life_requests: float = Field(
        100.0, gt=0, description="A provider's evidence in a context halves over this many of "
                                 "its own newer outcomes there (new evidence displaces old).")
    stale_half_life_requests: float = Field(
        2000.0, gt=0, description="... and over this many requests of the context, so a "
                                  "provider left untried there is eventually tried again.")
    detect_changes: bool = Field(
        True, description="Drop a provider's older evidence in a context once its recent "
                          "outcomes there shift beyond chance (CUSUM): a drift is followed "
                          "within dozens of outcomes, not half-lives.")
    global_half_life_requests: float = Field(
        5000.0, gt=0, description="A provider's global evidence halves over this many requests.")
    half_life_s: float | None = Field(
        None, gt=0, description="Also halve all evidence every this many seconds (None: off).")
    prior_score: float = Field(0.7, ge=0, le=1, description="Outcome score assumed before any "
                               "feedback at all (any feedback soon outweighs it).")
    prior_weight: float = Field(
        2.0, gt=0, description="Pseudo-samples behind a provider's prior (new provider).")
    context_weight: float = Field(
        10.0, gt=0, description="Pseudo-samples behind a context's prior until enough contexts "
                                "have evidence to learn it (empirical Bayes).")
    prior_success: float = Field(0.95, ge=0, le=1, description="Success rate assumed at first.")
    max_contexts: int = Field(2000, ge=1, description="Contexts tracked; least recently used "
                              "are folded into the global figures.")
    max_tracked_requests: int = Field(
        100_000, ge=1, description="Recent request ids remembered so feedback finds its provider.")
    max_targets: int = Field(32, ge=1, description="Distinct quality targets priced at once.")
    rebuild_requests: int = Field(
        50_000, ge=0, description="A restarted router relearns from this many of the latest "
                                  "requests in the audit trail (and their feedback).")
    target_margin: float = Field(
        0.04, ge=0, le=0.2, description="cost-aware: aim this much above the quality target, "
        "so the stream ends at or above it despite outcome noise and the low bias of "
        "estimates where the best provider was seldom tried.")
    optimism: float = Field(
        1.0, ge=0, description="cost-aware: standard errors of the best provider's estimate "
                               "added to the target while it is uncertain (learns it early).")
    repay_requests: float = Field(
        1000.0, gt=0, description="cost-aware: a shortfall of realized quality is made up "
                                  "over about this many requests.")
    plan_requests: int = Field(
        1000, ge=10, description="cost-aware: recent requests the price of quality is "
                                 "solved over (their context and prompt length).")


@dataclass(slots=True)
class Stat:
    """Decayed sums for one provider in one scope; every field decays together."""

    tick: float = 0.0
    ts: float = 0.0
    score_n: float = 0.0
    score_s: float = 0.0
    ok_n: float = 0.0
    ok_s: float = 0.0
    lat_n: float = 0.0
    lat_s: float = 0.0
    out_n: float = 0.0
    out_s: float = 0.0
    scores: int = 0  # outcomes counted here (each one ages the earlier ones)
    # change detection (actors/policy/changes.py): the two CUSUM sums and the evidence since each
    # last stood at zero
    cu_lo: float = 0.0
    cu_hi: float = 0.0
    lo_n: float = 0.0
    lo_s: float = 0.0
    hi_n: float = 0.0
    hi_s: float = 0.0

    def scale(self, f: float) -> None:
        self.score_n *= f
        self.score_s *= f
        self.lo_n *= f
        self.lo_s *= f
        self.hi_n *= f
        self.hi_s *= f
        self.scale_attempts(f)

    def scale_attempts(self, f: float) -> None:
        self.ok_n *= f
        self.ok_s *= f
        self.lat_n *= f
        self.lat_s *= f
        self.out_n *= f
        self.out_s *= f


class Context:
    """One context: its request clock and each provider's decayed sums there."""

    __slots__ = ("tick", "ts", "stats", "traffic", "traffic_tick", "post")

    def __init__(self, global_tick: float) -> None:
        self.tick = 0.0  # requests seen in this context
        self.ts = 0.0
        self.stats: dict[str, Stat] = {}
        self.traffic = 0.0  # decayed request count, on the global clock
        self.traffic_tick = global_tick
        # the posterior under the shared prior: means, variances, the prior's version (None:
        # its evidence changed since, recomputed when next read)
        self.post: tuple[list[float], list[float], int] | None = None


@dataclass(slots=True)
class Memo:
    """What feedback for one request needs: who answered, where, and under which target."""

    provider: str
    key: ContextKey
    target: float | None
    score: float | None = None
    ctx_tick: float = 0.0  # clocks when the score was counted (to replace it exactly)
    tick: float = 0.0
    ts: float = 0.0
    nth: int = 0  # which outcome of its (provider, context) it was


class Belief(NamedTuple):
    """One provider in one context, as a decision sees it (a tuple: built per decision)."""

    score: float  # posterior mean outcome score
    weight: float  # evidence behind it, prior included (Beta α + β)
    success: float  # posterior mean success rate
    output_tokens: float  # expected output tokens
    evidence: float  # decayed feedback count in this context (no prior)
