"""The exploration budget: how much traffic and money exploring may spend learning.

Exploring ranks providers by an optimistic score — the posterior mean plus `bonus_sd` of
its standard deviations (default), or a Thompson draw — instead of the posterior mean. The
optimistic index is deterministic and tries a provider where its estimate is uncertain
enough to matter: on generated outcome tables it paid about 0.02–0.03 of the strong
provider's cost less than Thompson sampling at equal score, whose random draws keep
flipping close calls (BENCHMARKS.md, routing round 8).

A choice is exploratory when the exploring ranking's first provider differs from the greedy
one (posterior means). It is allowed while both budgets have room: a share of decisions (a
token bucket: each decision adds `share` of a token, an exploration takes one, the bucket
starts full so a new router learns at once) and USD per hour, counted as the premium of the
explored provider's expected cost over the greedy choice's, over the last 60 minutes (one
bucket a minute, so the state stays fixed-size at any rate).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExplorationSpec(BaseModel):
    """`router.exploration`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Off: always the greedy choice.")
    method: Literal["optimistic", "thompson"] = Field(
        "optimistic", description="How a ranking explores: by the posterior mean plus "
                                  "`bonus_sd` standard deviations (deterministic), or by a "
                                  "Thompson draw from the posterior.")
    bonus_sd: float = Field(2.0, ge=0, le=10, description="optimistic: standard deviations "
                            "of a provider's estimate added to it when exploring.")
    share: float = Field(0.1, ge=0, le=1, description="Most decisions that may explore, "
                         "over the long run.")
    burst: float = Field(50.0, ge=0, description="Explorations allowed at once before the "
                         "share applies (the bucket's size).")
    usd_per_hour: float | None = Field(
        None, ge=0, description="Most premium over the greedy choice per sliding hour, USD "
                                "(None: only the share bounds it).")


class ExplorationBudget:
    """Plain state; the clock comes in as `now` (seconds)."""

    def __init__(self, spec: ExplorationSpec | None = None) -> None:
        self.spec = spec or ExplorationSpec()
        self._tokens = self.spec.burst
        self._minutes = [(-1, 0.0)] * 60  # (minute number, premium USD in it)
        self.decisions = 0
        self.explored = 0
        self.refused = 0

    def hour_usd(self, now: float) -> float:
        """Premium spent on exploration over the last 60 minutes."""
        minute = int(now // 60)
        return sum(usd for m, usd in self._minutes if minute - 60 < m <= minute)

    def can_explore(self) -> bool:
        """Whether the next decision could explore (else sampling is not worth doing)."""
        return self.spec.enabled and self._tokens + self.spec.share >= 1.0

    def decide(self, wants: bool, premium_usd: float, now: float) -> bool:
        """Count one decision; True if it may explore (`wants`: the sample disagreed)."""
        self.decisions += 1
        self._tokens = min(self.spec.burst, self._tokens + self.spec.share)
        if not wants:
            return False
        ok = self.spec.enabled and self._tokens >= 1.0
        premium = max(premium_usd, 0.0)
        if ok and self.spec.usd_per_hour is not None and premium > 0:
            ok = self.hour_usd(now) + premium <= self.spec.usd_per_hour
        if not ok:
            self.refused += 1
            return False
        self._tokens -= 1.0
        self.explored += 1
        if premium > 0:
            minute = int(now // 60)
            m, usd = self._minutes[minute % 60]
            self._minutes[minute % 60] = (minute, usd + premium if m == minute else premium)
        return True
