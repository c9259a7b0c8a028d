"""Pattern detection: each pattern on hand-made bars, and agreement with TA-Lib on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prompts.context import PATTERN_DIRECTION
from prompts.indicators import atr, ema, volume_change
from prompts.ohlcv import load_sample
from prompts.patterns import detect_patterns


def _trend(n: int, start: float, step: float) -> list[tuple[float, float, float, float, float]]:
    """Bars whose open is the previous close, with small shadows: a quiet trend."""
    rows, prev = [], start
    for _ in range(n):
        close = prev + step
        rows.append((prev, max(prev, close) + 0.3, min(prev, close) - 0.3, close, 1000.0))
        prev = close
    return rows


def _detect(rows: list[tuple[float, float, float, float, float]]) -> pd.DataFrame:
    idx = pd.date_range("2020-01-01", periods=len(rows), freq="D")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close", "volume"], index=idx)
    a = atr(df["high"], df["low"], df["close"])
    return detect_patterns(df, a, ema(df["close"], 20), volume_change(df["volume"]))


def _fired_last(found: pd.DataFrame) -> dict[str, float]:
    last = found.iloc[-1]
    return {name: float(conf) for name, conf in last.items() if not np.isnan(conf)}


CASES = {
    # name: (step of the 60-bar trend ending at 100, the pattern's bar(s) appended to it)
    "bullish_engulfing": (
        -0.2,
        [(100.0, 100.1, 99.4, 99.5, 1000), (99.4, 100.7, 99.3, 100.6, 1000)],
    ),
    "bearish_engulfing": (
        0.2,
        [(100.0, 100.6, 99.9, 100.5, 1000), (100.6, 100.7, 99.3, 99.4, 1000)],
    ),
    "hammer": (-0.2, [(100.0, 100.25, 98.6, 100.2, 1000)]),
    "shooting_star": (0.2, [(100.0, 101.4, 99.75, 99.8, 1000)]),
    "doji": (0.0, [(100.0, 100.9, 99.1, 100.02, 1000)]),
    "breakout": (0.0, [(100.0, 102.6, 99.9, 102.5, 3000)]),
    "breakdown": (0.0, [(100.0, 100.1, 97.4, 97.5, 3000)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_candle_pattern_is_detected(name: str) -> None:
    step, tail = CASES[name]
    base = _trend(60, 100.0 - 60 * step, step)
    if step == 0.0:  # a flat market still needs ranges for the ATR; alternate small moves
        base = [(100.0, 100.4, 99.6, 100.0 + (0.1 if i % 2 else -0.1), 1000.0) for i in range(60)]
    found = _detect(base + [tuple(map(float, bar)) for bar in tail])
    fired = _fired_last(found)
    assert name in fired, fired
    assert 0.0 < fired[name] <= 1.0
    opposite = {"bullish": "bearish", "bearish": "bullish"}.get(PATTERN_DIRECTION[name])
    assert not any(PATTERN_DIRECTION[n] == opposite for n in fired), fired


def test_quiet_trend_fires_no_candle_patterns() -> None:
    found = _detect(_trend(80, 100.0, 0.1))
    candles = ["bullish_engulfing", "bearish_engulfing", "hammer", "shooting_star", "doji"]
    assert found[candles].iloc[20:].isna().all().all()


@pytest.mark.parametrize(
    ("first", "second", "name"), [(-0.5, 0.8, "golden_cross"), (0.5, -0.8, "death_cross")]
)
def test_moving_average_crosses_fire_once(first: float, second: float, name: str) -> None:
    rows = _trend(250, 300.0, first)
    rows += _trend(200, rows[-1][3], second)
    found = _detect(rows)
    hits = found[name].dropna()
    assert len(hits) == 1
    assert hits.index[0] > found.index[250]
    assert 0.3 <= hits.iloc[0] <= 1.0
    other = "death_cross" if name == "golden_cross" else "golden_cross"
    assert found[other].dropna().empty


def test_bigger_candles_get_more_confidence() -> None:
    base = _trend(60, 112.0, -0.2)
    small = _fired_last(_detect(base + [(100.0, 100.06, 99.6, 100.05, 1000.0)]))
    big = _fired_last(_detect(base + [(100.0, 100.25, 98.0, 100.2, 1000.0)]))
    assert big["hammer"] > small["hammer"]


@pytest.fixture(scope="module")
def sp500_patterns() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = load_sample("sp500")
    a = atr(df["high"], df["low"], df["close"])
    return df, detect_patterns(df, a, ema(df["close"], 20), volume_change(df["volume"]))


def test_confidences_in_range_on_real_data(
    sp500_patterns: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, found = sp500_patterns
    values = found.to_numpy().ravel()
    values = values[~np.isnan(values)]
    assert values.size > 1000
    assert ((values >= 0) & (values <= 1)).all()
    assert (found.notna().mean() < 0.2).all()  # patterns are events, not the normal state


def test_engulfing_agrees_with_talib(sp500_patterns: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    talib = pytest.importorskip("talib")
    df, found = sp500_patterns
    theirs = np.sign(
        talib.CDLENGULFING(*(df[k].to_numpy() for k in ("open", "high", "low", "close")))
    )
    ours = found["bullish_engulfing"].notna().astype(int) - found[
        "bearish_engulfing"
    ].notna().astype(int)
    after_atr = slice(20, None)  # we report nothing before ATR(14) exists
    assert (ours.to_numpy()[after_atr] == theirs[after_atr]).mean() > 0.99


def test_our_dojis_are_talib_dojis(sp500_patterns: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """TA-Lib measures the body against a 10-bar average range, we against the bar's own."""
    talib = pytest.importorskip("talib")
    df, found = sp500_patterns
    theirs = talib.CDLDOJI(*(df[k].to_numpy() for k in ("open", "high", "low", "close"))) != 0
    ours = found["doji"].notna().to_numpy()
    assert (theirs[ours]).mean() > 0.85
