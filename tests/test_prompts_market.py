"""From OHLCV to contexts: input checks, no look-ahead, and one feature pass per backtest."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import prompts.market as market
from prompts import ohlcv
from prompts.context import MarketContext, Position
from prompts.market import build_context, compute_features, contexts_for_bars, warmup_bars
from prompts.ohlcv import DataError, load_sample, normalize_ohlcv


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    return load_sample("sp500")


@pytest.fixture(scope="module")
def recent(sp500: pd.DataFrame) -> pd.DataFrame:
    """The last 600 bars: enough for warm-up, fast to recompute."""
    return sp500.iloc[-600:]


def test_load_sample_shapes() -> None:
    for name in ("sp500", "nasdaq"):
        df = load_sample(name)
        assert list(df.columns) == ["open", "high", "low", "close", "volume"]
        assert len(df) == 5031 and df.index[0] == pd.Timestamp("1999-01-04")
    with pytest.raises(ValueError, match="unknown sample 'dax'"):
        load_sample("dax")


def test_load_sample_without_arch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    ohlcv._load_arch.cache_clear()
    monkeypatch.setitem(sys.modules, "arch.data", None)
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install arch"):
            load_sample("sp500")
    finally:
        ohlcv._load_arch.cache_clear()


def test_columns_match_case_insensitively_and_timestamps_may_be_a_column(
    recent: pd.DataFrame,
) -> None:
    raw = recent.rename(columns=str.upper).reset_index().rename(columns={"timestamp": "Date"})
    raw["Adj Close"] = raw["CLOSE"]
    got = normalize_ohlcv(raw)
    pd.testing.assert_frame_equal(got, recent, check_freq=False)
    ctx = build_context(raw, "SPX", "1d")
    assert ctx == build_context(recent, "SPX", "1d")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns="volume"), r"missing column\(s\) \['volume'\]"),
        (lambda d: d.iloc[::-1], "not sorted ascending"),
        (lambda d: pd.concat([d, d.iloc[[-1]]]), "duplicate timestamp 2018-12-31"),
        (lambda d: d.assign(close=d["close"].where(d.index != d.index[300])), "'close' has 1 NaN"),
        (lambda d: d.assign(high=d["low"] - 1), "high below low"),
        (lambda d: d.reset_index(drop=True), "no timestamps"),
        (lambda d: d.assign(open="x"), "'open' is not numeric"),
        (lambda d: d.iloc[:200], "too few bars: got 200, need at least 220"),
    ],
)
def test_bad_frames_raise_data_error_naming_the_problem(
    recent: pd.DataFrame, mutate, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        build_context(mutate(recent), "SPX", "1d")


def test_unknown_timeframe_is_named(recent: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="timeframe: unknown '2h'"):
        contexts_for_bars(recent, "SPX", "2h")


def test_build_context_uses_no_future_bars(sp500: pd.DataFrame) -> None:
    ctx = build_context(sp500, "SPX", "1d", as_of="2008-10-11")  # a Saturday → Friday's bar
    assert ctx.as_of == pd.Timestamp("2008-10-10")
    alone = build_context(sp500.loc[:"2008-10-10"], "SPX", "1d")
    assert ctx == alone
    assert ctx.regime == "high_volatility" and ctx.indicators.rsi < 30
    with pytest.raises(DataError, match="too few bars up to as_of"):
        build_context(sp500, "SPX", "1d", as_of="1999-06-01")
    with pytest.raises(DataError, match="no bar at or before"):
        build_context(sp500, "SPX", "1d", as_of="1990-01-01")


def test_contexts_for_bars_match_build_context(recent: pd.DataFrame) -> None:
    contexts = list(contexts_for_bars(recent, "SPX", "1d"))
    need = warmup_bars()
    assert len(contexts) == len(recent) - need + 1
    assert contexts[0].as_of == recent.index[need - 1]
    assert all(a.as_of < b.as_of for a, b in zip(contexts, contexts[1:], strict=False))
    for i in (0, 123, len(contexts) - 1):
        ctx = contexts[i]
        assert ctx == build_context(recent, "SPX", "1d", as_of=ctx.as_of)


def test_contexts_for_bars_computes_features_once(
    sp500: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = market._features
    monkeypatch.setattr(market, "_features", lambda *a: calls.append(1) or real(*a))
    contexts = list(contexts_for_bars(sp500, "SPX", "1d", start="2008-01-01", end="2008-12-31"))
    assert calls == [1]
    assert len(contexts) == 253
    assert contexts[0].as_of == pd.Timestamp("2008-01-02") and contexts[-1].as_of == pd.Timestamp(
        "2008-12-31"
    )


def test_position_and_pattern_lookback_are_carried(recent: pd.DataFrame) -> None:
    pos = Position(entry=2500, stop=2400, size=10, account_equity=100_000)
    one = list(contexts_for_bars(recent, "SPX", "1d", position=pos, pattern_lookback=1))
    three = list(contexts_for_bars(recent, "SPX", "1d", position=pos))
    assert all(c.position == pos for c in three)
    assert all(p.bars_ago == 0 for c in one for p in c.patterns)
    assert sum(len(c.patterns) for c in three) > sum(len(c.patterns) for c in one)
    for ctx in three:
        keys = [(p.bars_ago, -p.confidence) for p in ctx.patterns]
        assert keys == sorted(keys)


def test_compute_features_columns(recent: pd.DataFrame) -> None:
    feats = compute_features(recent, "1d")
    complete = feats.iloc[warmup_bars() - 1 :].drop(
        columns=[c for c in feats if c.startswith("pattern_")]
    )
    assert complete.notna().all().all()
    assert set(MarketContext.model_fields["indicators"].annotation.model_fields) <= set(
        feats.columns
    )
    assert feats["regime"].iloc[-1] in {"bull", "bear", "sideways", "high_volatility"}


def test_intraday_frame_with_a_time_column() -> None:
    rng = np.random.default_rng(3)
    n = 400
    close = 50_000 * np.exp(np.cumsum(0.002 * rng.standard_normal(n)))
    frame = pd.DataFrame(
        {
            "Timestamp": pd.date_range("2024-03-01 09:30", periods=n, freq="5min", tz="UTC"),
            "Open": close * 0.999,
            "High": close * 1.002,
            "Low": close * 0.997,
            "Close": close,
            "Volume": rng.integers(1, 100, n),
        }
    )
    ctx = build_context(frame, "BTC-USD", "5m")
    assert ctx.style == "scalping" and ctx.as_of.tzinfo is not None
    with pytest.raises(DataError, match="time zone"):
        build_context(frame, "BTC-USD", "5m", as_of="2024-03-02 10:00")
