"""Cost summaries and budget status over a hand-made cost frame."""

from __future__ import annotations

import pandas as pd
import pytest

from actors.budget import BudgetSpec
from actors.summaries import budget_status, cost_per_token, cost_summary

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


@pytest.mark.parametrize("by", ["hour", "day"])
def test_summaries_sum_to_the_records_total(by: str) -> None:
    df = frame(ROWS)
    s = cost_summary(df, by)
    assert s.index.names == ["period", "provider", "model"]
    assert s["cost_usd"].sum() == pytest.approx(df["cost_usd"].sum())
    assert s["input_tokens"].sum() == df["input_tokens"].sum()
    assert s["attempts"].sum() == len(df)
    if by == "hour":
        assert len(s) == 5 and set(s.index.get_level_values("period").minute) == {0}


def test_bad_period_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="hour, day"):
        cost_summary(frame(ROWS), "week")


def test_empty_frame_gives_empty_summaries() -> None:
    df = frame([])
    assert cost_summary(df, "day").empty and cost_per_token(df).empty
    assert budget_status(df, {"daily_usd": 1.0}, NOW)["spend_usd"].tolist() == [0.0]


def test_cost_per_token() -> None:
    c = cost_per_token(frame(ROWS))
    gpt = c.loc[("gpt", "gpt-model")]
    assert gpt["tokens"] == 3800
    assert gpt["usd_per_1k_tokens"] == pytest.approx(0.30 / 3.8)


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
