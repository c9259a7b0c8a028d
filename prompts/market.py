"""From an OHLCV frame to `MarketContext`s: one bar (`build_context`) or every bar (`contexts_for_bars`).

Features are computed once over the whole frame, vectorized, then read row by row: every feature
is causal (bar *i* depends on bars ≤ *i* only), so row *i* of the whole-frame computation is what
`build_context(df[: i + 1])` would compute, without the O(n²) cost of recomputing per bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from prompts.context import TIMEFRAMES, Indicators, MarketContext, Position
from prompts.indicators import INDICATOR_WARMUP, compute_indicators
from prompts.ohlcv import DataError, normalize_ohlcv
from prompts.patterns import PATTERN_WARMUP, detect_patterns
from prompts.regime import RegimeRules, classify, regime_features

PATTERN_LOOKBACK = 3
_INDICATOR_FIELDS = tuple(Indicators.model_fields)
_PATTERN_PREFIX = "pattern_"


def warmup_bars(rules: RegimeRules | None = None) -> int:
    """Bars needed before the first complete context: 220 with default rules (SMA 200 + slope
    20; the volatility baseline needs 20 + 120)."""
    rules = rules or RegimeRules()
    return max(INDICATOR_WARMUP, PATTERN_WARMUP, rules.warmup)


def compute_features(
    df: pd.DataFrame,
    timeframe: str,
    rules: RegimeRules | None = None,
    *,
    symbol: str | None = None,
) -> pd.DataFrame:
    """Every context feature for every bar, vectorized: indicator fields, the regime rule's
    measurements (`prompts.regime.regime_features`), regime, and one `pattern_<name>` confidence
    column (NaN where it did not fire). `symbol` picks the session from `rules.sessions`.

    Rows before `warmup_bars(rules)` are incomplete. Takes a raw frame (validated here).
    """
    _check_timeframe(timeframe)
    return _features(normalize_ohlcv(df), timeframe, _rules_for(rules, symbol))


def _rules_for(rules: RegimeRules | None, symbol: str | None) -> RegimeRules:
    return (rules or RegimeRules()).for_symbol(symbol)


def _features(bars: pd.DataFrame, timeframe: str, rules: RegimeRules) -> pd.DataFrame:
    ind = compute_indicators(bars)
    reg = regime_features(bars["close"], ind["atr"], timeframe, rules)
    pats = detect_patterns(bars, ind["atr"], ind["ema_fast"], ind["volume_change"])
    out = pd.concat([bars[["close"]], ind, reg, pats.add_prefix(_PATTERN_PREFIX)], axis=1)
    out["regime"] = classify(reg, bars["close"], rules)
    return out


def build_context(
    df: pd.DataFrame,
    symbol: str,
    timeframe: str,
    *,
    as_of: datetime | str | None = None,
    rules: RegimeRules | None = None,
    position: Position | dict | None = None,
    pattern_lookback: int = PATTERN_LOOKBACK,
) -> MarketContext:
    """The context of the last bar at or before `as_of` (default: the last bar).

    Bars after `as_of` are cut before anything is computed, so nothing leaks from the future.
    `rules` (default `RegimeRules()`) decide the regime; its session follows `symbol`.
    """
    _check_timeframe(timeframe)
    rules = _rules_for(rules, symbol)
    bars = normalize_ohlcv(df)
    if as_of is not None:
        end = _position_at_or_before(bars.index, as_of)
        bars = bars.iloc[: end + 1]
    _check_length(len(bars), rules, "up to as_of" if as_of is not None else "")
    rows = _Rows(_features(bars, timeframe, rules), symbol, timeframe, position, pattern_lookback)
    return rows.context(len(bars) - 1)


def contexts_for_bars(
    df: pd.DataFrame,
    symbol: str,
    timeframe: str,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    rules: RegimeRules | None = None,
    position: Position | dict | None = None,
    pattern_lookback: int = PATTERN_LOOKBACK,
) -> Iterator[MarketContext]:
    """Contexts for every complete bar (from warm-up on), oldest first, for backtests.

    `start`/`end` (inclusive) limit which bars are yielded; earlier bars still feed the warm-up.
    The frame is validated and all features computed before this returns, so data errors raise
    here, not at the first `next()`.
    """
    _check_timeframe(timeframe)
    rules = _rules_for(rules, symbol)
    bars = normalize_ohlcv(df)
    _check_length(len(bars), rules, "")
    first = warmup_bars(rules) - 1
    if start is not None:
        first = max(first, int(bars.index.searchsorted(_timestamp(start, bars.index), side="left")))
    last = len(bars) - 1
    if end is not None:
        last = int(bars.index.searchsorted(_timestamp(end, bars.index), side="right")) - 1
    rows = _Rows(_features(bars, timeframe, rules), symbol, timeframe, position, pattern_lookback)
    return (rows.context(i) for i in range(first, last + 1))


class _Rows:
    """Column arrays of a feature frame, turned into one validated context per row."""

    def __init__(
        self,
        features: pd.DataFrame,
        symbol: str,
        timeframe: str,
        position: Position | dict | None,
        lookback: int,
    ) -> None:
        if lookback < 1:
            raise ValueError(f"pattern_lookback must be ≥ 1, got {lookback}")
        self._index = features.index
        self._close = features["close"].to_numpy()
        self._regime = features["regime"].to_numpy()
        self._ind = {name: features[name].to_numpy() for name in _INDICATOR_FIELDS}
        names = [c for c in features.columns if c.startswith(_PATTERN_PREFIX)]
        self._pattern_names = [c.removeprefix(_PATTERN_PREFIX) for c in names]
        self._patterns = features[names].to_numpy()
        self._fired = ~np.isnan(self._patterns)
        self._any = self._fired.any(axis=1)
        self._lookback = lookback
        self._base: dict[str, Any] = {
            "symbol": symbol,
            "timeframe": timeframe,
            "position": position.model_dump() if isinstance(position, Position) else position,
        }

    def context(self, i: int) -> MarketContext:
        patterns = []
        for lag in range(min(self._lookback, i + 1)):
            j = i - lag
            if self._any[j]:
                for k in np.flatnonzero(self._fired[j]):
                    patterns.append(
                        {
                            "name": self._pattern_names[k],
                            "confidence": float(self._patterns[j, k]),
                            "bars_ago": lag,
                        }
                    )
        patterns.sort(key=lambda p: (p["bars_ago"], -p["confidence"]))
        return MarketContext.model_validate(
            {
                **self._base,
                "as_of": self._index[i].to_pydatetime(),
                "regime": self._regime[i],
                "last_close": float(self._close[i]),
                "indicators": {name: float(arr[i]) for name, arr in self._ind.items()},
                "patterns": patterns,
            }
        )


def _check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe: unknown {timeframe!r}; one of {list(TIMEFRAMES)}")


def _check_length(n: int, rules: RegimeRules, where: str) -> None:
    need = warmup_bars(rules)
    if n < need:
        raise DataError(
            f"too few bars{' ' + where if where else ''}: got {n}, need at least {need} for warm-up "
            f"(SMA {rules.trend_window} + {rules.slope_window}-bar slope and "
            f"{rules.vol_window} + {rules.baseline_min_bars} bars of volatility history for the "
            "regime; EMA 50, MACD 26/9, RSI/ATR 14, SMA 50/200 crosses)"
        )


def _timestamp(value: datetime | str, index: pd.DatetimeIndex) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if (ts.tzinfo is None) != (index.tz is None):
        raise DataError(f"timestamp {value!r} and the frame's index disagree on having a time zone")
    return ts


def _position_at_or_before(index: pd.DatetimeIndex, as_of: datetime | str) -> int:
    pos = int(index.searchsorted(_timestamp(as_of, index), side="right")) - 1
    if pos < 0:
        raise DataError(f"no bar at or before as_of={as_of!r} (first bar is {index[0]})")
    return pos
