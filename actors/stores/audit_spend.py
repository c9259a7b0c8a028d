"""What was spent, summed in SQL: the audit store's cost and cache-saving queries.

A part of `AuditBackend` (actors/stores/audit_base.py), in the shared SQL both backends run;
the tracker's cost summaries (actors/stores/spend.py) and budget re-seeding read through these.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

COST_COLS = ["ts", "request_id", "provider", "model", "input_tokens", "output_tokens",
             "cost_usd", "ok"]
#: What a cost summary groups by besides the period, unless told otherwise.
PERIOD_KEYS = ("provider", "model", "simulated")


def quoted(cols: Iterable[str], prefix: str = "") -> str:
    """A column list for SQL, each name quoted (one of them is `user`)."""
    return ", ".join(f'{prefix}"{c}"' for c in cols)


#: Token sums as integers on both backends (PostgreSQL's SUM of BIGINT is NUMERIC).
TOKENS = ("CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, "
          "CAST(SUM(output_tokens) AS BIGINT) AS output_tokens")


class SpendQueries:
    """Cost queries over a store's `_fetch` (under its lock) and `query`."""

    PERIOD: str
    _lock: threading.Lock
    _fetch: Callable[..., list[dict[str, Any]]]
    query: Callable[..., list[dict[str, Any]]]

    def cost_frame(self, since: float | None = None,
                   simulated: bool | None = None) -> pd.DataFrame:
        """One row per attempt (attempts are what is billed); `ts` as UTC datetimes."""
        sql = f"SELECT {', '.join(COST_COLS)} FROM attempts WHERE ts >= ?"
        params: tuple[Any, ...] = (since or 0.0,)
        if simulated is not None:
            sql, params = sql + " AND simulated = ?", (*params, int(simulated))
        with self._lock:
            rows = self._fetch(sql + " ORDER BY id", params)
        df = pd.DataFrame(rows, columns=COST_COLS)
        for col in ("input_tokens", "output_tokens"):
            df[col] = df[col].astype("int64")
        df["cost_usd"] = df["cost_usd"].astype(float)
        df["ts"] = pd.to_datetime(df["ts"].astype(float), unit="s", utc=True)
        df["ok"] = df["ok"].astype(bool)
        return df

    def spend_since(self, ts: float, provider: str | None = None,
                    simulated: bool | None = None) -> float:
        """USD of attempts since `ts`: all, or one provider's; real, simulated or both."""
        sql, params = "SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM attempts WHERE ts >= ?", [ts]
        if provider is not None:
            sql += " AND provider = ?"
            params.append(provider)
        if simulated is not None:
            sql += " AND simulated = ?"
            params.append(int(simulated))
        with self._lock:
            return float(self._fetch(sql, params)[0]["usd"])

    def _by_period(self, size: int, start: float, end: float, keys: Iterable[str],
                   aggregates: str, source: str) -> list[dict[str, Any]]:
        """Rows of `source` (a table and its filter, ending in AND) in `[start, end)`,
        grouped by period of `size` s and `keys` (columns), aggregated in SQL."""
        keys = list(keys)
        groups = ", ".join(str(i) for i in range(1, len(keys) + 2))
        return self.query(
            f"SELECT {self.PERIOD} AS period, {quoted(keys)}, {aggregates} FROM {source} "
            f"ts >= ? AND ts < ? GROUP BY {groups} ORDER BY {groups}",
            (size, size, start, end))

    def spend_by_period(self, size: int, start: float, end: float,
                        keys: Iterable[str] = PERIOD_KEYS) -> list[dict[str, Any]]:
        """Attempts grouped by period and `keys` (the covering `attempts_spend` index finds
        the window)."""
        return self._by_period(size, start, end, keys,
                               "COUNT(DISTINCT request_id) AS requests, COUNT(*) AS attempts, "
                               f"{TOKENS}, SUM(cost_usd) AS cost_usd", "attempts WHERE")

    def hits_by_period(self, size: int, start: float, end: float,
                       keys: Iterable[str] = PERIOD_KEYS) -> list[dict[str, Any]]:
        """Response-cache hits (requests answered from the cache: no attempts) and what
        they saved, grouped like `spend_by_period`."""
        return self._by_period(size, start, end, keys,
                               "COUNT(*) AS cache_hits, SUM(saved_usd) AS saved_usd",
                               "requests WHERE cached = 1 AND")

    def spend_by_model(self, start: float, end: float) -> list[dict[str, Any]]:
        """Tokens and USD per (provider, model) of attempts in `[start, end)`."""
        return self.query(
            f"SELECT provider, model, {TOKENS}, SUM(cost_usd) AS cost_usd FROM attempts "
            "WHERE ts >= ? AND ts < ? GROUP BY 1, 2 ORDER BY 1, 2", (start, end))
