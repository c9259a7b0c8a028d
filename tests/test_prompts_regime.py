"""Regime rule: volatility judged against the asset's own history, quick to see a shock.

Checked on real series of three kinds (index, single stock, hourly FX) over their whole history,
and on generated series with planted regimes at several volatility levels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from prompts.indicators import atr
from prompts.market import build_context
from prompts.regime import RegimeRules, classify, regime_features
from tests.real_series import REAL_SERIES, by_next_bar, load_real, shock_bars, vix_closes


def _labels(
    bars: pd.DataFrame,
    rules: RegimeRules | None = None,
    timeframe: str = "1d",
) -> pd.Series:
    rules = rules or RegimeRules()
    close = bars["close"]
    feats = regime_features(close, atr(bars["high"], bars["low"], close), timeframe, rules)
    return classify(feats, close, rules)


def _real_labels(name: str) -> tuple[pd.DataFrame, pd.Series]:
    s = REAL_SERIES[name]
    bars = load_real(name)
    return bars, _labels(bars, RegimeRules(session=s.session), s.timeframe)


@pytest.fixture(scope="module")
def sp500_labels() -> pd.Series:
    return _real_labels("sp500")[1]


def _share(labels: pd.Series, *names: str) -> float:
    return float(labels.isin(names).mean())


# -- real series, whole history -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REAL_SERIES))
def test_high_volatility_share_is_sane_on_every_real_series(name: str) -> None:
    """Neither "never" (the fixed rule on hourly FX) nor "a quarter of the time" (on GOOG)."""
    labels = _real_labels(name)[1].dropna()
    assert len(labels) > 1500
    assert 0.02 <= _share(labels, "high_volatility") <= 0.30


@pytest.mark.parametrize("name", sorted(REAL_SERIES))
def test_every_4_sigma_move_is_high_volatility_by_the_next_bar(name: str) -> None:
    bars, labels = _real_labels(name)
    shocks = shock_bars(bars["close"], REAL_SERIES[name].year) & labels.notna()
    assert shocks.sum() >= 10, "the check needs shocks to look at"
    flagged = by_next_bar(labels == "high_volatility")
    missed = list(shocks.index[shocks & ~flagged])
    assert missed == []


def test_sp500_shock_days_with_vix_above_30_are_high_volatility(sp500_labels: pd.Series) -> None:
    """2015–2018: the fixed 35 % rule said bull or sideways on every one of these."""
    vix = vix_closes()
    days = vix.index[(vix > 30) & (vix.index.year >= 2015) & (vix.index.year <= 2018)]
    days = days.intersection(sp500_labels.index)
    assert len(days) >= 5 and pd.Timestamp("2018-02-05") in days
    flagged = by_next_bar(sp500_labels == "high_volatility")
    assert flagged[days].all(), list(days[~flagged[days].to_numpy()])


def test_high_volatility_lasts_at_least_the_dwell(sp500_labels: pd.Series) -> None:
    """No flicker: every high_volatility run lasts min_dwell bars (the last may be cut off)."""
    hv = (sp500_labels.dropna() == "high_volatility").to_numpy()
    edges = np.flatnonzero(np.diff(np.r_[0, hv.astype(int), 0]))
    runs = (edges[1::2] - edges[::2])[:-1]
    assert len(runs) > 20
    assert runs.min() >= RegimeRules().min_dwell


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
    assert rules.warmup == 220
    assert sp500_labels.iloc[: rules.warmup - 1].isna().all()
    assert sp500_labels.iloc[rules.warmup - 1 :].notna().all()
    assert set(sp500_labels.dropna()) == {"bull", "bear", "sideways", "high_volatility"}


def test_250_bars_are_enough_and_agree_with_the_full_history() -> None:
    """`analyze(bars.iloc[-250:])` keeps working; the short baseline sees the same shock."""
    bars = load_real("sp500")
    short = build_context(bars.loc[:"2018-02-05"].iloc[-250:], "SPX", "1d")
    full = build_context(bars.loc[:"2018-02-05"], "SPX", "1d")
    assert short.regime == full.regime == "high_volatility"


def test_ratio_is_configurable(sp500_labels: pd.Series) -> None:
    calm = _labels(load_real("sp500"), RegimeRules(high_vol_ratio=50.0))
    assert _share(calm, "high_volatility") == 0.0
    assert _share(sp500_labels, "high_volatility") > 0.0


# -- generated series with planted regimes ------------------------------------------------------


def _bars(close: np.ndarray, spread: float = 0.005) -> pd.DataFrame:
    idx = pd.date_range("2020-01-01", periods=len(close), freq="D")
    c = pd.Series(close, index=idx)
    return pd.DataFrame({"high": c * (1 + spread), "low": c * (1 - spread), "close": c}, index=idx)


def _from_returns(r: np.ndarray) -> pd.DataFrame:
    return _bars(100 * np.exp(np.cumsum(r)), spread=float(np.std(r)))


@pytest.mark.parametrize("sigma", [0.002, 0.01, 0.03])  # an FX pair, an index, a wild stock
@pytest.mark.parametrize("seed", range(5))
def test_planted_shock_is_seen_at_once_and_forgotten_after_the_dwell(
    sigma: float, seed: int
) -> None:
    """calm → one 4σ bar → calm: high_volatility on the shock bar, held min_dwell bars, then the
    trend label back."""
    rng = np.random.default_rng(seed)
    r = sigma * rng.standard_normal(500)
    r[400] = -4 * sigma
    labels = _labels(_from_returns(r))
    dwell = RegimeRules().min_dwell
    hv = labels == "high_volatility"
    assert hv.iloc[400 : 400 + dwell].all()
    assert not hv.iloc[400 + dwell : 400 + dwell + 4].all()  # back to the trend label


@pytest.mark.parametrize("sigma", [0.002, 0.01, 0.03])
def test_planted_month_of_triple_volatility(sigma: float) -> None:
    """calm → 21 bars at 3× → calm: flagged within a bar or two of the change, held through the
    month, and calm again once its 20-bar volatility has come down. Over 20 draws: a 3× month
    can open with a few small moves that look calm, so the lag is a distribution."""
    lags, covered, tails = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        scale = np.full(520, sigma)
        scale[400:421] *= 3
        labels = _labels(_from_returns(scale * rng.standard_normal(520)))
        hv = (labels == "high_volatility").to_numpy()
        lags.append(int(np.flatnonzero(hv[400:])[0]))
        covered.append(hv[402:421].mean())
        tails.append(int(np.flatnonzero(~hv[421:])[0]))
    assert np.median(lags) <= 1 and np.mean(np.array(lags) <= 2) >= 0.8, lags
    assert np.mean(covered) >= 0.9, covered
    assert max(tails) <= RegimeRules().vol_window + RegimeRules().min_dwell, tails


@pytest.mark.parametrize("sigma", [0.002, 0.01, 0.03])
def test_pure_noise_is_rarely_high_volatility(sigma: float) -> None:
    """Constant-volatility noise has no turbulent spell; its EWMA still reaches 2× its median
    now and then (≈ 1 % of bars), never a sizeable share."""
    shares = []
    for seed in range(10):
        rng = np.random.default_rng(200 + seed)
        labels = _labels(_from_returns(sigma * rng.standard_normal(1200))).dropna()
        shares.append(_share(labels, "high_volatility"))
    assert np.mean(shares) < 0.025 and max(shares) < 0.06, shares


@pytest.mark.parametrize(
    ("drift", "noise", "expected"),
    [
        (0.002, 0.003, "bull"),
        (-0.002, 0.003, "bear"),
        (0.0, 0.003, "sideways"),
    ],
)
def test_planted_trends(drift: float, noise: float, expected: str) -> None:
    rng = np.random.default_rng(7)
    steps = drift + noise * rng.standard_normal(400)
    if expected == "sideways":
        steps = noise * np.sign(np.sin(np.arange(400)))  # oscillates, no drift
    labels = _labels(_bars(100 * np.exp(np.cumsum(steps))))
    assert _share(labels.dropna().iloc[-100:], expected) > 0.8


def test_steady_high_volatility_is_normal_for_that_asset() -> None:
    """4 % a day every day is that asset's normal: judged by its trend, not high_volatility
    (the fixed rule called it high_volatility on every bar)."""
    rng = np.random.default_rng(7)
    labels = _labels(_bars(100 * np.exp(np.cumsum(0.04 * rng.standard_normal(600)))))
    assert _share(labels.dropna(), "high_volatility") < 0.05


def test_flat_prices_are_calm_and_a_first_move_is_a_shock() -> None:
    close = np.full(300, 100.0)
    close[280:] = 101.0
    labels = _labels(_bars(close))
    assert labels.iloc[219:280].eq("sideways").all()
    assert labels.iloc[280] == "high_volatility"


# -- annualization and rules ---------------------------------------------------------------------


def test_sessions_change_annualization_not_labels() -> None:
    rng = np.random.default_rng(1)
    bars = _bars(100 * np.exp(np.cumsum(0.004 * rng.standard_normal(300))))
    close = bars["close"]
    a = atr(bars["high"], bars["low"], close)
    std = np.log(close).diff().rolling(20).std()

    def vol(timeframe: str, rules: RegimeRules) -> pd.DataFrame:
        return regime_features(close, a, timeframe, rules)

    equity = RegimeRules()
    assert vol("1d", equity)["realized_vol"].iloc[-1] == pytest.approx(std.iloc[-1] * np.sqrt(252))
    assert vol("1h", equity)["realized_vol"].iloc[-1] == pytest.approx(
        std.iloc[-1] * np.sqrt(252 * 6.5)
    )
    fx, crypto = RegimeRules(session="fx"), RegimeRules(session="crypto")
    assert vol("1h", fx)["realized_vol"].iloc[-1] == pytest.approx(std.iloc[-1] * np.sqrt(24 * 260))
    assert vol("1h", crypto)["realized_vol"].iloc[-1] == pytest.approx(
        std.iloc[-1] * np.sqrt(24 * 365)
    )
    override = RegimeRules(bars_per_year=1000)
    assert vol("1h", override)["realized_vol"].iloc[-1] == pytest.approx(
        std.iloc[-1] * np.sqrt(1000)
    )
    # the ratio is unitless: with the same baseline window, the same ratio in any session
    pd.testing.assert_series_equal(
        vol("1d", RegimeRules(session="fx", baseline_bars=252))["vol_ratio"],
        vol("1d", equity)["vol_ratio"],
    )
    assert equity.baseline_window("1h") == 1638 and fx.baseline_window("1h") == 6240


def test_session_per_symbol_from_glob_patterns() -> None:
    rules = RegimeRules(sessions={"EURUSD": "fx", "btc-*": "crypto", "*USDT": "crypto"})
    assert rules.for_symbol("EURUSD").session == "fx"
    assert rules.for_symbol("BTC-USD").session == "crypto"  # patterns ignore case
    assert rules.for_symbol("ethusdt").session == "crypto"
    assert rules.for_symbol("SPX").session == "equity"
    assert rules.for_symbol(None) is rules
    assert RegimeRules(session="fx", sessions={"SPY": "equity"}).for_symbol("SPY").session == (
        "equity"
    )


def test_build_context_uses_the_symbols_session() -> None:
    bars = load_real("eurusd")
    rules = RegimeRules(sessions={"EUR*": "fx"})
    fx = build_context(bars, "EURUSD", "1h", rules=rules)
    equity = build_context(bars, "SPX", "1h", rules=rules)
    assert fx.indicators.realized_vol == pytest.approx(
        equity.indicators.realized_vol * np.sqrt(24 * 260 / (252 * 6.5))
    )


def test_rules_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="high_vol_rattio"):
        RegimeRules(high_vol_rattio=3.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="trend_window"):
        RegimeRules(trend_window=1)
    with pytest.raises(ValidationError, match="high_vol_ratio"):
        RegimeRules(high_vol_ratio=0.9)
    with pytest.raises(ValidationError, match="session"):
        RegimeRules(sessions={"EURUSD": "forex"})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="baseline_bars .* at least baseline_min_bars"):
        RegimeRules(baseline_bars=50)


def test_the_old_fixed_threshold_is_refused_with_its_replacement_named() -> None:
    with pytest.raises(ValidationError, match="replaced by high_vol_ratio"):
        RegimeRules(high_vol_threshold=0.35)  # type: ignore[call-arg]
