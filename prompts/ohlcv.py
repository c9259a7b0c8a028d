"""OHLCV input: checking a caller's frame, and the bundled real sample data.

Bad bars make confident-sounding prompts, so a frame is refused with a `DataError` that names the
problem rather than silently repaired.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

COLUMNS = ("open", "high", "low", "close", "volume")
_TIME_COLUMNS = ("timestamp", "datetime", "date", "time")
SAMPLES = ("sp500", "nasdaq")


class DataError(ValueError):
    """The OHLCV frame cannot be used as given (message says why)."""


def normalize_ohlcv(df: pd.DataFrame) -> pd.DataFrame:
    """A float frame with columns open, high, low, close, volume on a sorted DatetimeIndex.

    Column names match case-insensitively; the timestamps come from a DatetimeIndex or from a
    column named timestamp, datetime, date or time. Extra columns are dropped.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    by_lower: dict[str, str] = {}
    for col in df.columns:
        key = str(col).strip().lower()
        if key in by_lower:
            raise DataError(f"columns {by_lower[key]!r} and {col!r} differ only in case")
        by_lower[key] = col
    missing = [c for c in COLUMNS if c not in by_lower]
    if missing:
        raise DataError(f"missing column(s) {missing}; need {list(COLUMNS)} (any case)")

    index = df.index
    if not isinstance(index, pd.DatetimeIndex):
        time_col = next((by_lower[c] for c in _TIME_COLUMNS if c in by_lower), None)
        if time_col is None:
            raise DataError(
                f"no timestamps: use a DatetimeIndex or a column named one of {list(_TIME_COLUMNS)}"
            )
        try:
            index = pd.DatetimeIndex(pd.to_datetime(df[time_col]))
        except (ValueError, TypeError) as exc:
            raise DataError(f"column {time_col!r} is not parseable as timestamps: {exc}") from exc
    if index.hasnans:
        raise DataError("timestamps contain NaT")
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise DataError(f"duplicate timestamp {dup}")
    if not index.is_monotonic_increasing:
        pos = int(np.flatnonzero(np.diff(index.asi8) < 0)[0]) + 1
        raise DataError(f"timestamps not sorted ascending: {index[pos]} follows {index[pos - 1]}")

    out = pd.DataFrame(index=index)
    for col in COLUMNS:
        try:
            values = pd.to_numeric(df[by_lower[col]].to_numpy(), errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            raise DataError(f"column {col!r} is not numeric: {exc}") from exc
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"column {col!r} has {int(bad.sum())} NaN/inf value(s), first at {index[bad][0]}"
            )
        out[col] = values
    if (out["high"] < out["low"]).any():
        at = out.index[(out["high"] < out["low"]).to_numpy()][0]
        raise DataError(f"high below low at {at}")
    if (out[["open", "high", "low", "close"]] <= 0).any().any():
        raise DataError("prices must be positive (log returns and ratios need it)")
    if (out["volume"] < 0).any():
        raise DataError("volume must not be negative")
    out.index.name = "timestamp"
    return out


@lru_cache(maxsize=len(SAMPLES))
def _load_arch(name: str) -> pd.DataFrame:
    try:
        if name == "sp500":
            from arch.data import sp500 as dataset
        else:
            from arch.data import nasdaq as dataset
    except ImportError as exc:
        raise ModuleNotFoundError(
            "load_sample needs the 'arch' package, which bundles the sample data: pip install arch"
        ) from exc
    return normalize_ohlcv(dataset.load())


def load_sample(name: str = "sp500") -> pd.DataFrame:
    """Real daily OHLCV, 1999-01-04 .. 2018-12-31 (5,031 bars): the S&P 500 or NASDAQ composite.

    The data ships inside the `arch` package (imported only here), so demos and tests run offline.
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of {list(SAMPLES)}")
    return _load_arch(name).copy()
