"""Spend summaries aggregated in SQL over a bounded time window.

A cost report reads only the rows of its window and lets the database group them (the
covering `attempts_spend` index finds the window): no table is loaded into memory, however
long the audit trail grows. The SQL is the store's, the same on SQLite and PostgreSQL. The
window is `since` ≤ ts < `until`; without `since` it is a recent period (`DEFAULT_SPAN_S`),
and a window may hold at most `MAX_PERIODS` periods. Simulated and real spend are reported apart (the `simulated` level), never summed together.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from actors.stores.audit_base import AuditBackend

PERIOD_S: dict[str, int] = {"hour": 3600, "day": 86400}
#: The window when a caller gives no `since`: two days of hours, a month of days.
DEFAULT_SPAN_S: dict[str, float] = {"hour": 2 * 86400.0, "day": 31 * 86400.0}
MAX_PERIODS = 5000
SUMMARY_INDEX = ["period", "provider", "model", "simulated"]
#: What a cost summary can be grouped by besides the period: the columns each choice keys on.
GROUPS: dict[str, list[str]] = {"provider": ["provider", "model", "simulated"],
                                "user": ["user", "simulated"]}
SUMMARY_COLUMNS = ["requests", "attempts", "input_tokens", "output_tokens", "cost_usd"]
#: Requests answered from the response cache (no attempt, nothing paid) and what those
#: answers cost when they were paid.
CACHE_COLUMNS = ["cache_hits", "saved_usd"]
TimeLike = float | int | str | datetime | pd.Timestamp | None


class WindowError(ValueError):
    """A bad report window; `param` names the argument at fault (by, since or until)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def period_seconds(by: str) -> int:
    """Seconds in a period name; a bad name is an error naming the good ones."""
    try:
        return PERIOD_S[by]
    except KeyError:
        raise WindowError("by", f"unknown period {by!r}; choose one of "
                          f"{', '.join(PERIOD_S)}") from None


def as_unix(value: TimeLike, name: str) -> float | None:
    """Unix seconds from seconds, an ISO 8601 string or a datetime (naive = UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise WindowError(name, f"{name}: expected a time, got {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    else:
        try:
            text = value.strip() if isinstance(value, str) else value
            if isinstance(text, str) and _is_number(text):
                out = float(text)
            else:
                ts = pd.Timestamp(text)
                ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
                out = ts.timestamp()
        except (ValueError, TypeError, OverflowError):
            raise WindowError(name, f"{name}: not a time: {value!r} (give unix seconds or ISO "
                              "8601, e.g. 2026-11-27T09:00:00Z)") from None
    if not math.isfinite(out) or out < 0:
        raise WindowError(name, f"{name}: not a time: {value!r}")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def window(by: str, since: TimeLike = None, until: TimeLike = None,
           now: float | None = None) -> tuple[float, float]:
    """The checked `[since, until)` window for a summary by `by`."""
    size = period_seconds(by)
    end = as_unix(until, "until")
    end = (time.time() if now is None else now) + 1e-6 if end is None else end
    start = as_unix(since, "since")
    start = end - DEFAULT_SPAN_S[by] if start is None else start
    if start >= end:
        raise WindowError("since", f"since must be before until (since={start:.0f}, "
                          f"until={end:.0f})")
    periods = math.ceil((end - start) / size)
    if periods > MAX_PERIODS:
        raise WindowError("since", f"window of {periods} {by}s is too long (at most "
                          f"{MAX_PERIODS}); ask by=day or give a shorter since/until")
    return start, end


def group_columns(group_by: str) -> list[str]:
    """The key columns of a grouping; a bad name is an error naming the good ones."""
    try:
        return GROUPS[group_by]
    except KeyError:
        raise WindowError("group_by", f"group_by: unknown grouping {group_by!r}; choose one of "
                          f"{', '.join(GROUPS)}") from None


def cost_summary(store: AuditBackend, by: str = "hour", since: TimeLike = None,
                 until: TimeLike = None, now: float | None = None,
                 group_by: str = "provider") -> pd.DataFrame:
    """Spend per UTC period and (provider, model, simulated) — or, with group_by="user",
    (user, simulated): requests, attempts, tokens, USD, and the response cache's hits and
    savings (hits have no attempts: they cost nothing). A request without a user is null."""
    size = period_seconds(by)
    keys = group_columns(group_by)
    start, end = window(by, since, until, now)
    rows = store.spend_by_period(size, start, end, keys)
    index = ["period", *keys]
    df = pd.DataFrame(rows, columns=index + SUMMARY_COLUMNS)
    df["period"] = pd.to_datetime(df["period"].astype(float), unit="s", utc=True)
    df["simulated"] = df["simulated"].astype(bool)
    for col in SUMMARY_COLUMNS[:-1]:
        df[col] = df[col].astype("int64")
    df["cost_usd"] = df["cost_usd"].astype(float)
    hits = store.hits_by_period(size, start, end, keys)
    if not hits:
        df = df.assign(cache_hits=0, saved_usd=0.0)
        df["cache_hits"] = df["cache_hits"].astype("int64")
        return df.set_index(index)
    h = pd.DataFrame(hits, columns=index + CACHE_COLUMNS)
    h["period"] = pd.to_datetime(h["period"].astype(float), unit="s", utc=True)
    h["simulated"] = h["simulated"].astype(bool)
    out = df.merge(h, how="outer", on=index).fillna(
        {c: 0 for c in SUMMARY_COLUMNS + CACHE_COLUMNS})
    for col in [*SUMMARY_COLUMNS[:-1], "cache_hits"]:
        out[col] = out[col].astype("int64")
    return out.sort_values(index).set_index(index)


def cost_per_token(store: AuditBackend, since: TimeLike = None, until: TimeLike = None,
                   now: float | None = None) -> pd.DataFrame:
    """Realized blended cost per token for each (provider, model) over a window (default:
    the last month)."""
    start, end = window("day", since, until, now)
    rows = store.spend_by_model(start, end)
    out = pd.DataFrame(rows, columns=["provider", "model", "input_tokens", "output_tokens",
                                      "cost_usd"]).set_index(["provider", "model"])
    out["tokens"] = out["input_tokens"] + out["output_tokens"]
    per = out["cost_usd"] / out["tokens"].replace(0, np.nan)
    out["usd_per_token"] = per
    out["usd_per_1k_tokens"] = per * 1000
    return out


def describe_window(start: float, end: float) -> dict[str, Any]:
    """The window as ISO strings, for report bodies."""
    iso = lambda t: pd.Timestamp(t, unit="s", tz="UTC").isoformat()  # noqa: E731
    return {"since": iso(start), "until": iso(end)}
