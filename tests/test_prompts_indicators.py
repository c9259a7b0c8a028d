"""Our pandas indicators against TA-Lib on real S&P 500 / NASDAQ history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prompts import indicators as ind
from prompts.ohlcv import load_sample

talib = pytest.importorskip("talib")

TOL = 1e-6
TAIL = 300  # the brief's "past warm-up" window; we also check every bar where both are defined


@pytest.fixture(scope="module", params=["sp500", "nasdaq"])
def bars(request: pytest.FixtureRequest) -> pd.DataFrame:
    return load_sample(request.param)


def _same(ours: pd.Series, theirs: np.ndarray) -> None:
    a = ours.to_numpy(dtype=float)
    # Same first defined bar (same seeding), then equal everywhere after it.
    first_a = int(np.flatnonzero(~np.isnan(a))[0])
    first_b = int(np.flatnonzero(~np.isnan(theirs))[0])
    assert first_a <= first_b
    assert np.abs(a[-TAIL:] - theirs[-TAIL:]).max() < TOL
    assert np.abs(a[first_b:] - theirs[first_b:]).max() < TOL


def test_rsi_matches_talib(bars: pd.DataFrame) -> None:
    close = bars["close"]
    _same(ind.rsi(close, 14), talib.RSI(close.to_numpy(), 14))
    assert ind.rsi(close).first_valid_index() == close.index[14]


def test_macd_matches_talib(bars: pd.DataFrame) -> None:
    close = bars["close"]
    line, signal, hist = ind.macd(close, 12, 26, 9)
    t_line, t_signal, t_hist = talib.MACD(close.to_numpy(), 12, 26, 9)
    _same(line, t_line)
    _same(signal, t_signal)
    _same(hist, t_hist)


@pytest.mark.parametrize("period", [20, 50])
def test_ema_matches_talib(bars: pd.DataFrame, period: int) -> None:
    close = bars["close"]
    ours = ind.ema(close, period)
    _same(ours, talib.EMA(close.to_numpy(), period))
    assert ours.first_valid_index() == close.index[period - 1]


def test_atr_and_bollinger_width_match_talib(bars: pd.DataFrame) -> None:
    h, low, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
    _same(ind.atr(bars["high"], bars["low"], bars["close"], 14), talib.ATR(h, low, c, 14))
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0)
    _same(ind.bollinger_width(bars["close"], 20, 2.0), (upper - lower) / middle)


def test_compute_indicators_is_causal(bars: pd.DataFrame) -> None:
    """Row i of the whole-frame computation equals computing on the first i+1 bars."""
    whole = ind.compute_indicators(bars)
    for i in (60, 1000, 3333):
        part = ind.compute_indicators(bars.iloc[: i + 1])
        pd.testing.assert_series_equal(part.iloc[-1], whole.iloc[i], rtol=1e-12)


def test_all_indicator_columns_defined_after_warmup(bars: pd.DataFrame) -> None:
    frame = ind.compute_indicators(bars)
    assert frame.iloc[ind.INDICATOR_WARMUP - 1 :].notna().all().all()
    assert frame.iloc[ind.INDICATOR_WARMUP - 2].isna().any()


def test_flat_prices_read_neutral_rsi_and_zero_volume_reads_no_change() -> None:
    idx = pd.date_range("2024-01-01", periods=40, freq="D")
    flat = pd.Series(100.0, index=idx)
    assert (ind.rsi(flat).dropna() == 50.0).all()
    assert (ind.volume_change(pd.Series(0.0, index=idx)).dropna() == 0.0).all()
    vol = pd.Series([100.0] * 20 + [250.0] + [100.0] * 19, index=idx)
    assert ind.volume_change(vol).iloc[20] == pytest.approx(1.5)


def test_rsi_bounds_on_monotone_series() -> None:
    idx = pd.date_range("2024-01-01", periods=30, freq="D")
    up = pd.Series(np.arange(30, dtype=float) + 1, index=idx)
    assert ind.rsi(up).dropna().eq(100.0).all()
    assert ind.rsi(-up + 100).dropna().eq(0.0).all()
