"""Regime rule: sensible on real S&P 500 history, and each branch reachable on synthetic prices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from prompts.indicators import atr
from prompts.ohlcv import load_sample
from prompts.regime import RegimeRules, classify, regime_features


def _labels(
    bars: pd.DataFrame, rules: RegimeRules | None = None, timeframe: str = "1d"
) -> pd.Series:
    rules = rules or RegimeRules()
    close = bars["close"]
    feats = regime_features(close, atr(bars["high"], bars["low"], close), timeframe, rules)
    return classify(feats, close, rules)


@pytest.fixture(scope="module")
def sp500_labels() -> pd.Series:
    return _labels(load_sample("sp500"))


def _share(labels: pd.Series, *names: str) -> float:
    return float(labels.isin(names).mean())


def test_autumn_2008_is_bear_or_high_volatility(sp500_labels: pd.Series) -> None:
    autumn = sp500_labels["2008-09-01":"2008-12-31"]
    assert len(autumn) > 80
    assert _share(autumn, "bear", "high_volatility") > 0.8
    assert _share(autumn["2008-10"], "high_volatility") > 0.8  # the crash month itself


def test_2004_to_2006_is_mostly_bull(sp500_labels: pd.Series) -> None:
    calm = sp500_labels["2004":"2006"]
    assert _share(calm, "bull") > 0.6
    assert _share(calm, "bear", "high_volatility") < 0.05


def test_2001_bear_market(sp500_labels: pd.Series) -> None:
    assert _share(sp500_labels["2001"], "bear", "high_volatility") > 0.8


def test_warmup_is_trend_window_plus_slope(sp500_labels: pd.Series) -> None:
    rules = RegimeRules()
    assert sp500_labels.iloc[: rules.warmup - 1].isna().all()
    assert sp500_labels.iloc[rules.warmup - 1 :].notna().all()
    assert set(sp500_labels.dropna()) == {"bull", "bear", "sideways", "high_volatility"}


def test_threshold_is_configurable(sp500_labels: pd.Series) -> None:
    calm = _labels(load_sample("sp500"), RegimeRules(high_vol_threshold=5.0))
    assert _share(calm, "high_volatility") == 0.0
    assert _share(sp500_labels, "high_volatility") > 0.0


def _bars(close: np.ndarray, spread: float = 0.005) -> pd.DataFrame:
    idx = pd.date_range("2020-01-01", periods=len(close), freq="D")
    c = pd.Series(close, index=idx)
    return pd.DataFrame({"high": c * (1 + spread), "low": c * (1 - spread), "close": c}, index=idx)


@pytest.mark.parametrize(
    ("drift", "noise", "expected"),
    [
        (0.002, 0.003, "bull"),
        (-0.002, 0.003, "bear"),
        (0.0, 0.003, "sideways"),
        (0.0, 0.04, "high_volatility"),
    ],
)
def test_synthetic_regimes(drift: float, noise: float, expected: str) -> None:
    rng = np.random.default_rng(7)
    steps = drift + noise * rng.standard_normal(400)
    if expected == "sideways":
        steps = noise * np.sign(np.sin(np.arange(400)))  # oscillates, no drift
    labels = _labels(_bars(100 * np.exp(np.cumsum(steps))))
    assert _share(labels.dropna().iloc[-100:], expected) > 0.8


def test_bars_per_year_changes_annualization() -> None:
    rng = np.random.default_rng(1)
    bars = _bars(100 * np.exp(np.cumsum(0.004 * rng.standard_normal(300))))
    rules = RegimeRules()
    close = bars["close"]
    a = atr(bars["high"], bars["low"], close)
    daily = regime_features(close, a, "1d", rules)["realized_vol"].iloc[-1]
    hourly = regime_features(close, a, "1h", rules)["realized_vol"].iloc[-1]
    crypto = regime_features(close, a, "1h", RegimeRules(bars_per_year=24 * 365))[
        "realized_vol"
    ].iloc[-1]
    assert hourly == pytest.approx(daily * np.sqrt(6.5))
    assert crypto == pytest.approx(daily * np.sqrt(24 * 365 / 252))


def test_rules_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="high_vol_treshold"):
        RegimeRules(high_vol_treshold=0.3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="trend_window"):
        RegimeRules(trend_window=1)
