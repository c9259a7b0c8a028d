"""Spend summaries over the audit trail's cost frame, and spend against the budgets.

The input is `AuditStore.cost_frame()`: one row per attempt (attempts are what is billed),
columns ts (UTC datetime), request_id, provider, model, input_tokens, output_tokens,
cost_usd, ok. Budget windows are calendar UTC hours and days, the same windows the
router's `BudgetLedger` enforces, so both report the same spend.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from actors.budget import GLOBAL, WINDOWS, BudgetLedger, BudgetSpec, Limits

PERIODS: dict[str, str] = {"hour": "h", "day": "D"}


def period_freq(by: str) -> str:
    """The pandas frequency for a period name; a bad name is an error naming the good ones."""
    try:
        return PERIODS[by]
    except KeyError:
        raise ValueError(f"unknown period {by!r}; choose one of {', '.join(PERIODS)}") from None


def cost_summary(frame: pd.DataFrame, by: str = "hour") -> pd.DataFrame:
    """Spend per period and (provider, model): requests, attempts, tokens, cost_usd."""
    freq = period_freq(by)
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
    """Spend in the current UTC hour and day against every configured limit.

    Indexed by (scope, window); scope is "*" (global) or a provider name, as in the
    router's ledger. status is "ok", "soft" (≥ soft_limit of the limit) or "exceeded".
    """
    spec = budgets if isinstance(budgets, BudgetSpec) else BudgetSpec.model_validate(budgets)
    now = time.time() if now is None else now
    scopes: list[tuple[str, Limits]] = [(GLOBAL, spec), *sorted(spec.per_provider.items())]
    rows = []
    for scope, limits in scopes:
        mine = frame if scope == GLOBAL else frame[frame["provider"] == scope]
        for window in WINDOWS:
            limit = limits.limit(window)
            if limit is None:
                continue
            start = BudgetLedger.window_start(window, now)
            since = pd.Timestamp(start, unit="s", tz="UTC")
            spend = float(mine.loc[mine["ts"] >= since, "cost_usd"].sum())
            if spend >= limit:
                status = "exceeded"
            elif spend >= spec.soft_limit * limit:
                status = "soft"
            else:
                status = "ok"
            rows.append({
                "scope": scope, "window": window, "since": since, "spend_usd": spend,
                "limit_usd": limit, "remaining_usd": max(limit - spend, 0.0),
                "used": spend / limit if limit else np.inf, "status": status,
            })
    cols = ["scope", "window", "since", "spend_usd", "limit_usd", "remaining_usd", "used",
            "status"]
    return pd.DataFrame(rows, columns=cols).set_index(["scope", "window"])
