"""Spend summaries over the audit trail's cost frame, and the budget limits they are held to.

The input is `AuditStore.cost_frame()`: one row per attempt (attempts are what is billed),
columns ts (UTC datetime), request_id, provider, model, input_tokens, output_tokens,
cost_usd, ok. Budget windows are rolling (the last 3600 s / 86400 s), the same windows the
router enforces, not calendar hours.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.config import ConfigError

PERIODS: dict[str, str] = {"hour": "h", "day": "D"}
WINDOWS: dict[str, float] = {"hourly": 3600.0, "daily": 86400.0}


class ProviderBudget(BaseModel):
    """Spend limits for one provider (None = no limit at that window)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hourly_usd: float | None = Field(None, ge=0, description="USD over any rolling hour.")
    daily_usd: float | None = Field(None, ge=0, description="USD over any rolling 24 h.")


class BudgetSpec(ProviderBudget):
    """The `budgets:` config section: global limits, per-provider limits, a warning level."""

    per_provider: dict[str, ProviderBudget] = Field(
        default_factory=dict, description="Limits per provider name.")
    soft_limit: float = Field(
        0.8, gt=0, le=1, description="Share of a limit at which status turns 'soft'.")

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> BudgetSpec:
        """Validate the raw section; errors name the key, e.g. budgets.per_provider.x.daily_usd."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise ConfigError(_section_errors("budgets", exc)) from None


def _section_errors(section: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join([section, *(str(p) for p in err["loc"])])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {msg.removeprefix('Value error, ')}")
    return f"invalid {section} configuration\n" + "\n".join(lines)


def _period(by: str) -> str:
    try:
        return PERIODS[by]
    except KeyError:
        raise ValueError(f"unknown period {by!r}; choose one of {', '.join(PERIODS)}") from None


def cost_summary(frame: pd.DataFrame, by: str = "hour") -> pd.DataFrame:
    """Spend per period and (provider, model): requests, attempts, tokens, cost_usd."""
    freq = _period(by)
    df = frame.assign(period=frame["ts"].dt.floor(freq))
    out = df.groupby(["period", "provider", "model"], sort=True).agg(
        requests=("request_id", "nunique"),
        attempts=("request_id", "size"),
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
        cost_usd=("cost_usd", "sum"),
    )
    return out


def cost_per_token(frame: pd.DataFrame) -> pd.DataFrame:
    """Realized blended cost per token for each (provider, model), input and output together."""
    out = frame.groupby(["provider", "model"], sort=True).agg(
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
        cost_usd=("cost_usd", "sum"),
    )
    out["tokens"] = out["input_tokens"] + out["output_tokens"]
    per = out["cost_usd"] / out["tokens"].replace(0, np.nan)
    out["usd_per_token"] = per
    out["usd_per_1k_tokens"] = per * 1000
    return out


def budget_status(
    frame: pd.DataFrame,
    budgets: BudgetSpec | dict[str, Any],
    now: float | None = None,
) -> pd.DataFrame:
    """Spend against every configured limit, indexed by (scope, window).

    scope is "global" or a provider name; status is "ok", "soft" (≥ soft_limit of the
    limit) or "exceeded" (≥ the limit; a zero limit is exceeded from the start).
    """
    spec = budgets if isinstance(budgets, BudgetSpec) else BudgetSpec.from_config(budgets)
    now = time.time() if now is None else now
    scopes: list[tuple[str, ProviderBudget]] = [("global", spec)]
    scopes += sorted(spec.per_provider.items())
    rows = []
    for scope, limits in scopes:
        mine = frame if scope == "global" else frame[frame["provider"] == scope]
        for window, seconds in WINDOWS.items():
            limit = getattr(limits, f"{window}_usd")
            if limit is None:
                continue
            since = pd.Timestamp(now - seconds, unit="s", tz="UTC")
            spend = float(mine.loc[mine["ts"] > since, "cost_usd"].sum())
            if spend >= limit:
                status = "exceeded"
            elif spend >= spec.soft_limit * limit:
                status = "soft"
            else:
                status = "ok"
            rows.append({
                "scope": scope, "window": window, "window_s": seconds, "spend_usd": spend,
                "limit_usd": limit, "remaining_usd": max(limit - spend, 0.0),
                "used": spend / limit if limit else np.inf,
                "status": status,
            })
    cols = ["scope", "window", "window_s", "spend_usd", "limit_usd", "remaining_usd", "used",
            "status"]
    return pd.DataFrame(rows, columns=cols).set_index(["scope", "window"])
