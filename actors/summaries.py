"""Spend against the budgets over the audit trail's cost frame of the current UTC day.

The input is `AuditStore.cost_frame()`: one row per attempt (attempts are what is billed),
columns ts (UTC datetime), request_id, provider, model, input_tokens, output_tokens,
cost_usd, ok. Budget windows are calendar UTC hours and days, the same windows the
router's `BudgetLedger` enforces, so both report the same spend. (Cost summaries over
longer windows aggregate in SQL: `actors/spend.py`.)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from actors.budget import GLOBAL, WINDOWS, BudgetLedger, BudgetSpec, Limits


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
