"""Spend limits: reserve a request's worst-case cost before dispatch, settle to the real cost.

The router is the only writer, so reservations are atomic without locks: under any number
of concurrent requests the settled + reserved spend of a window never passes its limit.
Windows are calendar UTC hours and days, like the tracker's cost summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from actors.core.errors import ErrorClass, Refusal

WINDOWS: dict[str, float] = {"hourly": 3600.0, "daily": 86400.0}
GLOBAL = "*"


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hourly_usd: float | None = Field(None, gt=0, description="Spend cap per UTC hour.")
    daily_usd: float | None = Field(None, gt=0, description="Spend cap per UTC day.")

    def limit(self, window: str) -> float | None:
        return self.hourly_usd if window == "hourly" else self.daily_usd


class BudgetSpec(Limits):
    """The `budgets:` config section. Omitted limits mean unlimited."""

    per_provider: dict[str, Limits] = Field(default_factory=dict, description="Limits per provider.")
    soft_limit: float = Field(0.8, gt=0, le=1, description="Share of a limit that triggers a warning.")

    @property
    def has_limits(self) -> bool:
        limits = [self, *self.per_provider.values()]
        return any(x.hourly_usd is not None or x.daily_usd is not None for x in limits)

    def scopes(self, provider: str) -> list[tuple[str, Limits]]:
        out: list[tuple[str, Limits]] = [(GLOBAL, self)]
        if provider in self.per_provider:
            out.append((provider, self.per_provider[provider]))
        return out


@dataclass(frozen=True)
class BudgetWarning:
    """A soft limit crossed: who (`global` or the provider), which window, and the words."""

    scope: str
    window: str
    message: str


@dataclass
class _Bucket:
    start: float
    settled: float = 0.0
    reserved: float = 0.0
    warned: bool = False


@dataclass
class Reservation:
    provider: str
    amount: float
    keys: list[tuple[str, str, float]] = field(default_factory=list)  # (scope, window, start)
    settled: bool = False


class BudgetLedger:
    """Reserve / settle bookkeeping per (scope, window)."""

    def __init__(self, spec: BudgetSpec) -> None:
        self.spec = spec
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    @staticmethod
    def window_start(window: str, now: float) -> float:
        size = WINDOWS[window]
        return (now // size) * size

    def _bucket(self, scope: str, window: str, now: float) -> _Bucket:
        start = self.window_start(window, now)
        b = self._buckets.get((scope, window))
        if b is None or b.start != start:
            b = _Bucket(start)
            self._buckets[(scope, window)] = b
        return b

    def seed(self, scope: str, window: str, spent: float, now: float) -> None:
        """Start from spend already recorded in this window (e.g. after a router restart)."""
        self._bucket(scope, window, now).settled = spent

    def blocked_reason(self, provider: str, amount: float, now: float) -> Refusal | None:
        """Why reserving `amount` for `provider` would break a limit (a BUDGET_EXCEEDED
        refusal of the scope whose limit it is), or None."""
        for scope, limits in self.spec.scopes(provider):
            for window in WINDOWS:
                limit = limits.limit(window)
                if limit is None:
                    continue
                b = self._bucket(scope, window, now)
                if b.settled + b.reserved + amount > limit + 1e-12:
                    who = "global" if scope == GLOBAL else f"provider {scope}"
                    return Refusal(
                        f"budget_exceeded: {who} {window} budget ${limit:.4f} "
                        f"(spent ${b.settled:.4f}, reserved ${b.reserved:.4f}, "
                        f"this request needs up to ${amount:.4f})",
                        ErrorClass.BUDGET_EXCEEDED, scope)
        return None

    def reserve(self, provider: str, amount: float, now: float) -> Reservation:
        reason = self.blocked_reason(provider, amount, now)
        if reason:
            raise reason.error(provider)
        res = Reservation(provider, amount)
        for scope, _ in self.spec.scopes(provider):
            for window in WINDOWS:
                b = self._bucket(scope, window, now)
                b.reserved += amount
                res.keys.append((scope, window, b.start))
        return res

    def settle(self, res: Reservation, actual: float, now: float) -> list[BudgetWarning]:
        """Replace the reservation by the real cost; returns soft-limit warnings crossed now."""
        if res.settled:
            return []
        res.settled = True
        warnings: list[BudgetWarning] = []
        for scope, window, start in res.keys:
            b = self._buckets.get((scope, window))
            if b is not None and b.start == start:
                b.reserved = max(0.0, b.reserved - res.amount)
        for scope, limits in self.spec.scopes(res.provider):
            for window in WINDOWS:
                b = self._bucket(scope, window, now)
                b.settled += actual
                limit = limits.limit(window)
                if limit and not b.warned and b.settled >= self.spec.soft_limit * limit:
                    b.warned = True
                    who = "global" if scope == GLOBAL else scope
                    warnings.append(BudgetWarning(who, window, (
                        f"{who} {window} spend ${b.settled:.4f} crossed "
                        f"{self.spec.soft_limit:.0%} of ${limit:.4f}")))
        return warnings

    def status(self, now: float) -> list[dict[str, float | str | None]]:
        rows: list[dict[str, float | str | None]] = []
        scopes: list[tuple[str, Limits]] = [(GLOBAL, self.spec), *self.spec.per_provider.items()]
        for scope, limits in scopes:
            for window in WINDOWS:
                b = self._bucket(scope, window, now)
                limit = limits.limit(window)
                rows.append({
                    "scope": scope, "window": window, "limit_usd": limit,
                    "spent_usd": b.settled, "reserved_usd": b.reserved,
                    "used": (b.settled / limit) if limit else None,
                })
        return rows
