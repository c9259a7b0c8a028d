"""Technical indicators over an OHLCV frame, in plain pandas/numpy.

Why not TA-Lib at run time: it is a C library, and the router's workers (Ray actors, the Serve
endpoint, a notebook) should install with `pip` alone. TA-Lib stays a *test* dependency: the tests
check RSI(14), MACD(12,26,9), EMA(20) and ATR(14) against it on real S&P 500 history.

The numbers match TA-Lib exactly (to float rounding), not only after the averages converge, because
the seeding is the same: an EMA starts at the SMA of its first `period` values, Wilder averages
(RSI, ATR) start at the mean of their first `period` inputs, and MACD seeds its fast EMA on the
same bar as the slow one. Every indicator is causal: the value on bar *i* uses bars ≤ *i* only, so
computing over a whole backtest once and reading row *i* equals computing on `df[: i + 1]`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
EMA_FAST, EMA_SLOW = 20, 50
ATR_PERIOD = 14
BB_PERIOD, BB_K = 20, 2.0
VOLUME_WINDOW = 20

#: Bars before every column of `compute_indicators` is defined (the slowest is EMA_SLOW).
INDICATOR_WARMUP = max(EMA_SLOW, MACD_SLOW + MACD_SIGNAL - 1, RSI_PERIOD + 1, VOLUME_WINDOW + 1)


def _first_valid(values: np.ndarray) -> int:
    valid = np.flatnonzero(~np.isnan(values))
    if valid.size == 0:
        return len(values)
    return int(valid[0])


def _seeded_ewm(values: pd.Series, period: int, alpha: float, start: int | None) -> pd.Series:
    """Recursive average seeded with the SMA of `period` values from `start` (NaN before)."""
    arr = values.to_numpy(dtype=float, copy=True)
    first = _first_valid(arr) if start is None else start
    seed = first + period - 1
    if seed >= len(arr):
        return pd.Series(np.nan, index=values.index)
    seed_value = arr[first : seed + 1].mean()
    arr[:seed] = np.nan
    arr[seed] = seed_value
    return pd.Series(arr, index=values.index).ewm(alpha=alpha, adjust=False).mean()


def sma(values: pd.Series, period: int) -> pd.Series:
    """Simple moving average (NaN until `period` values exist)."""
    return values.rolling(period, min_periods=period).mean()


def ema(values: pd.Series, period: int, *, start: int | None = None) -> pd.Series:
    """EMA with k = 2/(period+1), seeded like TA-Lib with the SMA of the first `period` values.

    `start` is the position of the first value that goes into the seed; by default the first
    non-NaN one.
    """
    return _seeded_ewm(values, period, 2.0 / (period + 1), start)


def wilder(values: pd.Series, period: int) -> pd.Series:
    """Wilder's smoothing (alpha = 1/period), seeded with the mean of the first `period` values."""
    return _seeded_ewm(values, period, 1.0 / period, None)


def rsi(close: pd.Series, period: int = RSI_PERIOD) -> pd.Series:
    """Wilder RSI in [0, 100]; a flat window (no gains, no losses) reads 50, not TA-Lib's 0."""
    change = close.diff()
    gain = wilder(change.clip(lower=0.0), period)
    loss = wilder((-change).clip(lower=0.0), period)
    total = gain + loss
    out = 100.0 * gain / total.where(total > 0)
    return out.mask((total == 0) & gain.notna(), 50.0)


def macd(
    close: pd.Series, fast: int = MACD_FAST, slow: int = MACD_SLOW, signal: int = MACD_SIGNAL
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """MACD line, signal line and histogram.

    TA-Lib seeds the fast EMA on the bar where the slow one starts (the SMA of bars
    slow-fast .. slow-1), not at bar 0; doing the same makes the line exact from its first value.
    """
    first = _first_valid(close.to_numpy(dtype=float))
    slow_ema = ema(close, slow, start=first)
    fast_ema = ema(close, fast, start=first + slow - fast)
    line = fast_ema - slow_ema
    signal_line = ema(line, signal)
    return line, signal_line, line - signal_line


def true_range(high: pd.Series, low: pd.Series, close: pd.Series) -> pd.Series:
    """True range; undefined on the first bar (no previous close), as in TA-Lib."""
    prev = close.shift(1)
    ranges = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1)
    return ranges.max(axis=1, skipna=False)


def atr(high: pd.Series, low: pd.Series, close: pd.Series, period: int = ATR_PERIOD) -> pd.Series:
    """Average true range (Wilder), first defined on bar `period`."""
    return wilder(true_range(high, low, close), period)


def bollinger_width(close: pd.Series, period: int = BB_PERIOD, k: float = BB_K) -> pd.Series:
    """(upper − lower) / middle band, population std as in TA-Lib's BBANDS."""
    middle = sma(close, period)
    std = close.rolling(period, min_periods=period).std(ddof=0)
    return 2.0 * k * std / middle


def volume_change(volume: pd.Series, window: int = VOLUME_WINDOW) -> pd.Series:
    """Volume relative to the average of the previous `window` bars, minus 1 (0.5 = 50% above).

    Compared with *previous* bars so a spike is measured against normal trade. Series with no
    volume (indices, some FX feeds report 0) read 0 rather than dividing by zero.
    """
    base = volume.shift(1).rolling(window, min_periods=window).mean()
    out = volume / base.where(base > 0) - 1.0
    return out.mask((base == 0) & base.notna(), 0.0)


def compute_indicators(df: pd.DataFrame) -> pd.DataFrame:
    """All context indicators for a validated lowercase OHLCV frame, one column per field.

    Column names are the field names of `prompts.context.Indicators` computed here (the regime
    columns come from `prompts.regime`).
    """
    close, high, low = df["close"], df["high"], df["low"]
    line, signal_line, hist = macd(close)
    return pd.DataFrame(
        {
            "rsi": rsi(close),
            "macd": line,
            "macd_signal": signal_line,
            "macd_hist": hist,
            "ema_fast": ema(close, EMA_FAST),
            "ema_slow": ema(close, EMA_SLOW),
            "atr": atr(high, low, close),
            "bb_width": bollinger_width(close),
            "volume_change": volume_change(df["volume"]),
        },
        index=df.index,
    )
