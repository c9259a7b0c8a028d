"""A provider's state as the router sees it, and the per-request view policies rank.

Snapshots are pushed by provider actors when they change (and refreshed every
`router.snapshot_refresh_s` otherwise), so the router decides without asking every provider per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field


class Snapshot(BaseModel):
    """Compact provider state: health, rolling metrics, limits and prices."""

    name: str
    model: str
    api: str
    state: str = Field("closed", description="Breaker state: closed, open or half_open.")
    open_until: float | None = Field(None, description="Unix time the breaker may half-open.")
    success_rate: float = 1.0
    mean_confidence: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    samples: int = 0
    input_cost_per_mtok: float
    output_cost_per_mtok: float
    max_input_tokens: int
    max_output_tokens: int
    inflight: int = 0
    waiting: int = 0
    max_concurrency: int = 1
    rpm: int = 0
    tpm: int = 0
    simulated: bool = False
    ts: float = 0.0


NEUTRAL_SCORE = 0.7  # outcome score of a candidate built without learned estimates


@dataclass(slots=True)
class Need:
    """What one request needs from a provider, as policies see it."""

    prompt_tokens: int
    max_tokens: int | None
    context: dict[str, str] = field(default_factory=dict)
    expected_output_tokens: int = 400
    # Requests this router already has outstanding per provider (exact, unlike a snapshot's
    # inflight/waiting, which lag by up to a refresh): what this one would queue behind.
    ahead: dict[str, int] = field(default_factory=dict)
    value_usd: float | None = None  # cost-aware: what one unit of outcome score is worth
    sampled: bool = False  # rank by the exploring scores (draw) instead of the posterior means


@dataclass(slots=True)
class Candidate:
    """A snapshot (health, limits, prices) merged with what the router learned about the
    provider in this request's context (actors/policy/learning.py)."""

    name: str
    snapshot: Snapshot
    success_rate: float  # posterior mean share of attempts answered
    quality: float  # posterior mean outcome score (the prior where there is no feedback)
    draw: float  # the exploring score: optimistic or a Thompson draw (== quality otherwise)
    evidence: float  # decayed feedback behind `quality` in this context
    output_tokens: float | None  # expected output tokens (None: the request's default)
    confidence: float | None  # the answers' own stated confidence (a tie-break only)
    p50_s: float | None
    p95_s: float | None
    cost: float | None = None  # expected cost of this request here, if already known

    @classmethod
    def from_snapshot(cls, snap: Snapshot, belief: Any = None, draw: float | None = None,
                      ) -> Candidate:
        """`belief`: an actors.policy.learning.Belief; without one, the snapshot's own figures
        and a neutral outcome score."""
        if belief is None:
            q = NEUTRAL_SCORE
            return cls(snap.name, snap, snap.success_rate, q, q if draw is None else draw, 0.0,
                       None, snap.mean_confidence, snap.p50_s, snap.p95_s)
        return cls(snap.name, snap, belief.success, belief.score,
                   belief.score if draw is None else draw, belief.evidence,
                   belief.output_tokens, snap.mean_confidence, snap.p50_s, snap.p95_s)
