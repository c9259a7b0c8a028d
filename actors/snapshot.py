"""A provider's state as the router sees it, and the per-request view policies rank.

Snapshots are pushed by provider actors when they change (and refreshed at most every
~250 ms otherwise), so the router decides without asking every provider per request.
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
    mean_score: float | None = None
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


@dataclass(slots=True)
class Candidate:
    """A snapshot merged with the (context-specific or global) tracker figures."""

    name: str
    snapshot: Snapshot
    success_rate: float
    samples: int
    confidence: float | None
    score: float | None
    score_samples: int
    p50_s: float | None
    p95_s: float | None
    source: str = "global"

    @classmethod
    def from_snapshot(cls, snap: Snapshot, stats: dict[str, Any] | None = None) -> Candidate:
        """Prefer the tracker's figures (they know the context); fall back to the snapshot."""
        s = stats or {}
        return cls(
            name=snap.name,
            snapshot=snap,
            success_rate=_pick(s.get("success_rate"), snap.success_rate),
            samples=int(_pick(s.get("samples"), snap.samples)),
            confidence=_pick(s.get("mean_confidence"), snap.mean_confidence),
            score=_pick(s.get("mean_score"), snap.mean_score),
            score_samples=int(s.get("score_samples") or 0),
            p50_s=_pick(s.get("p50_s"), snap.p50_s),
            p95_s=_pick(s.get("p95_s"), snap.p95_s),
            source=str(s.get("source", "global")),
        )


def _pick(a, b):
    return b if a is None else a
