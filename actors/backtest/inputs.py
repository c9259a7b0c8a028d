"""Loading and checking the OHLCV series of a backtest, all before any request is sent.

Everything that could make a run fail half-way is checked here, in the driver, before the
router is even contacted: unreadable files, missing columns, NaNs, unsorted or duplicate
timestamps (via `prompts.normalize_ohlcv`), an unknown symbol, a timeframe that does not
match the bars' spacing, too few bars for the warm-up, and a date range with no bars.
A bad bar found later would otherwise cost every request already paid for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from actors.backtest.spec import SAMPLE_SYMBOLS, BacktestSpec, SeriesSpec
from prompts import (
    DataError,
    RegimeRules,
    compute_features,
    load_sample,
    normalize_ohlcv,
    warmup_bars,
)
from prompts.context import Indicators

#: Nominal bar length of each timeframe, to catch e.g. daily bars run as "1h".
BAR_SECONDS: dict[str, float] = {
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400,
    "1d": 86400, "1w": 604800,
}


@dataclass(frozen=True)
class Series:
    """A checked series and the bar positions [lo, hi] the run analyses."""

    spec: SeriesSpec
    symbol: str
    timeframe: str
    frame: pd.DataFrame  # normalized OHLCV, full history (warm-up included)
    lo: int
    hi: int
    sha256: str  # of the bars that feed prompts and outcomes (0 .. hi + horizon)

    @property
    def bars(self) -> int:
        return self.hi - self.lo + 1

    def label(self) -> str:
        return f"{self.symbol} {self.timeframe}"


def read_frame(spec: SeriesSpec) -> pd.DataFrame:
    """The raw rows of one series (only the chosen symbol's, for a multi-symbol file)."""
    if spec.sample:
        own = SAMPLE_SYMBOLS[spec.sample]
        if spec.symbol and spec.symbol.upper() != own:
            raise DataError(f"unknown symbol {spec.symbol!r} for {spec.source}: it holds {own}")
        return load_sample(spec.sample)
    path = Path(spec.source)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            raw = pd.read_csv(path)
        else:
            raw = pd.read_parquet(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a bad file
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    sym_col = next((c for c in raw.columns if str(c).strip().lower() == "symbol"), None)
    if sym_col is not None:
        known = sorted(map(str, raw[sym_col].dropna().unique()))
        want = spec.symbol or spec.name
        if want not in known:
            shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
            raise DataError(f"unknown symbol {want!r} in {path}; it holds: {shown}")
        raw = raw[raw[sym_col] == want].drop(columns=[sym_col])
    return raw


def check_timeframe(frame: pd.DataFrame, timeframe: str, where: str) -> None:
    """Refuse a timeframe far from the bars' median spacing (gaps like weekends are fine)."""
    if len(frame) < 3:
        return
    spacing = float(np.median(np.diff(frame.index.asi8))) / 1e9
    nominal = BAR_SECONDS[timeframe]
    if not 0.5 <= spacing / nominal <= 2.0:
        closest = min(BAR_SECONDS, key=lambda k: abs(np.log(BAR_SECONDS[k] / spacing)))
        raise DataError(f"{where}: timeframe {timeframe!r} does not match the data, whose median "
                        f"bar spacing is {_human(spacing)}; did you mean {closest!r}?")


def _human(seconds: float) -> str:
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= n:
            return f"{seconds / n:g} {unit}(s)"
    return f"{seconds:g} s"


def _position(index: pd.DatetimeIndex, value: str, side: str, what: str) -> int:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what}: not a date/time: {value!r} ({exc})") from None
    if (ts.tzinfo is None) != (index.tz is None):
        raise DataError(f"{what} {value!r} and the data disagree on having a time zone")
    return int(index.searchsorted(ts, side=side))  # type: ignore[arg-type]


def load_series(spec: SeriesSpec, run: BacktestSpec, rules: RegimeRules) -> Series:
    """Read, normalize and range-check one series under the run's regime rules (the warm-up
    and every bar's features); raises DataError naming the problem."""
    where = f"{spec.source} ({spec.name} {spec.timeframe})"
    try:
        frame = normalize_ohlcv(read_frame(spec))
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    check_timeframe(frame, spec.timeframe, where)
    need = warmup_bars(rules)
    if len(frame) < need:
        raise DataError(f"{where}: too few bars: {len(frame)}, need at least {need} for the "
                        "indicators' and the regime's warm-up")
    lo, hi = need - 1, len(frame) - 1
    if run.start:
        lo = max(lo, _position(frame.index, run.start, "left", "start"))
    if run.end:
        hi = _position(frame.index, run.end, "right", "end") - 1
    if run.limit:
        hi = min(hi, lo + run.limit - 1)
    if hi < lo:
        first = frame.index[need - 1]
        raise DataError(f"{where}: no bars to analyse between start={run.start} and "
                        f"end={run.end} (complete bars begin at {first}, data ends at "
                        f"{frame.index[-1]})")
    _check_features(frame, spec.timeframe, lo, hi, where, rules.for_symbol(spec.name))
    used = frame.iloc[: min(len(frame), hi + run.horizon + 1)]
    digest = hashlib.sha256(pd.util.hash_pandas_object(used, index=True).to_numpy().tobytes())
    return Series(spec, spec.name, spec.timeframe, frame, lo, hi, digest.hexdigest())


def _check_features(frame: pd.DataFrame, timeframe: str, lo: int, hi: int, where: str,
                    rules: RegimeRules) -> None:
    """Every indicator of every analysed bar finite (a NaN RSI would fail a context later)."""
    feats = compute_features(frame, timeframe, rules).iloc[lo: hi + 1]
    values = feats[list(Indicators.model_fields)].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        name = list(Indicators.model_fields)[col]
        raise DataError(f"{where}: indicator {name} is not finite at {feats.index[row]} "
                        "(flat or degenerate prices?)")
    if feats["regime"].isna().any():
        raise DataError(f"{where}: no regime at {feats.index[feats['regime'].isna()][0]}")


def load_all(run: BacktestSpec, rules: RegimeRules) -> list[Series]:
    return [load_series(s, run, rules) for s in run.series]
