"""Budget status over a hand-made cost frame (cost summaries: tests/test_spend.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from actors.budget import BudgetSpec
from actors.summaries import budget_status

NOW = 1_700_000_000.0


def frame(rows: list[tuple[float, str, str, int, int, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["ts", "request_id", "provider", "input_tokens",
                                     "output_tokens", "cost_usd"])
    df["model"] = df["provider"] + "-model"
    df["ok"] = True
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df


ROWS = [  # spread over 30 hours and two providers; r2 took two attempts
    (NOW - 30 * 3600, "r1", "claude", 1000, 200, 0.30),
    (NOW - 5 * 3600, "r2", "claude", 1000, 200, 0.30),
    (NOW - 5 * 3600 + 1, "r2", "gpt", 1000, 300, 0.10),
    (NOW - 1800, "r3", "gpt", 2000, 500, 0.20),
    (NOW - 60, "r4", "claude", 500, 100, 0.15),
]


def test_empty_frame_gives_zero_spend() -> None:
    assert budget_status(frame([]), {"daily_usd": 1.0}, NOW)["spend_usd"].tolist() == [0.0]


def test_budget_status_calendar_windows() -> None:
    # NOW is 800 s into its UTC hour and 80000 s into its UTC day
    spec = BudgetSpec(hourly_usd=1.0, daily_usd=1.0,
                      per_provider={"claude": {"hourly_usd": 0.1, "daily_usd": 0.5}, "gpt": {}})
    b = budget_status(frame(ROWS), spec, NOW)
    assert b.loc[("*", "hourly"), "spend_usd"] == pytest.approx(0.15)
    assert b.loc[("*", "daily"), "spend_usd"] == pytest.approx(0.75)
    assert b.loc[("*", "daily"), "status"] == "ok"
    assert b.loc[("claude", "hourly"), "status"] == "exceeded"
    assert b.loc[("claude", "daily"), "status"] == "soft"  # 0.45 of 0.5
    assert "gpt" not in b.index.get_level_values("scope")  # no limits set
