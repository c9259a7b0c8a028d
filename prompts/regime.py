"""Market regime: volatility relative to the asset's own history first, then the trend.

Every analysis prompt states the regime, so a wrong regime is a wrong premise. The rule, on every
bar (all parts causal: bar *i* reads bars ≤ *i* only):

1. **high_volatility** — the bar's volatility is at least `high_vol_ratio` (2.0) times the
   asset's *normal* volatility, or was so within the last `min_dwell` (5) bars.

   - *Now* is the larger of two estimates of per-bar volatility (root mean square of log
     returns, no annualization needed: it cancels in the ratio): a **fast** one, an EWMA of
     squared returns with a `fast_half_life` of 2 bars, and the **slow** one over `vol_window`
     (20) bars. The fast one makes a single shock count at once: one bar of k × normal
     volatility lifts the EWMA to √(0.29 k² + 0.71) × normal, so any bar beyond ≈ 3.4× normal
     (≈ 3.7× after a dead-calm stretch) is `high_volatility` on that very bar. The slow one
     keeps a turbulent month labelled while its 20-bar volatility is still high.
   - *Normal* is the median of the slow estimate over a trailing window: expanding from
     `baseline_min_bars` (120) up to a year of bars (`baseline_bars`, by default one year of the
     symbol's session, e.g. 252 daily or 6,240 hourly FX bars). A ratio to the asset's own
     median works the same on an index, a single stock and an FX pair, on any bar size; a fixed
     annualized threshold (the rule before, 20-bar vol > 35 %) called a volatile stock
     high-volatility a quarter of the time, an FX pair never, and needed weeks of turmoil
     before it tripped. A percentile of the trailing window was rejected: it labels a fixed
     share of every year, calm years included.
   - *Dwell*: the label is held for `min_dwell` bars after the last bar above the threshold, so
     it cannot flicker while volatility hovers near it; calm returns then bring the trend label
     back (a single shock: `min_dwell` bars later; a turbulent month: once its 20-bar volatility
     has come down).

   Checked first: in a crash the trend is also down, but what a trader must hear first is that
   ranges are wide (wider stops, smaller size).
2. **bull** — close above the `trend_window` (200) SMA, that SMA rising over `slope_window` (20)
   bars by more than `min_slope`, and the close at least `min_strength` (1) ATRs above it.
   Distance is measured in ATRs so the same threshold works on 5-minute and weekly bars.
3. **bear** — the mirror image.
4. **sideways** — everything else (price near a flat or crossing trend line).

Measured over the whole history of the shipped real series (scripts/bench_regime.py, figures in
BENCHMARKS.md), relative rule vs the fixed one: `high_volatility` on 14.5 % vs 4.1 % of S&P 500
days 1999–2018, 12.8 % vs 12.6 % of NASDAQ days, 17.1 % vs 25.5 % of GOOG days 2004–2013 and
13.4 % vs 0 % of EURUSD hourly bars 2017–2018. Every bar with a move beyond 4σ of its trailing
year (24, 20, 15 and 31 of them) is `high_volatility` on that very bar (the fixed rule: 10, 10,
12 and 0), and so is each of the 9 S&P 500 days of 2015–2018 on which the VIX closed above 30
(the fixed rule: none). Oct 2008 stays high_volatility, Sep–Dec 2008 bear or high_volatility,
2004–2006 76 % bull (3.8 % bear or high_volatility). On generated series (tests): a planted
month at 3× the normal volatility is high_volatility from its first or second bar in 13 of 20
draws and by its third in 18 (a turbulent month can open with moves that look calm); on
constant-volatility noise ≈ 1 % of bars are labelled high_volatility (the EWMA reaches 2× its
median by chance).

The realized volatility shown in the prompt (`realized_vol`) is the 20-bar standard deviation
annualized with the symbol's session (`prompts.sessions`); only the rule above uses the ratio.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prompts.indicators import sma
from prompts.sessions import Session, bars_per_year, session_for


class RegimeRules(BaseModel):
    """Thresholds of the regime rule (the config file's `regime:` section); defaults suit any
    asset on any bar size, because volatility is judged against the asset's own history."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    high_vol_ratio: float = Field(
        default=2.0,
        gt=1,
        description="high_volatility when volatility is at least this multiple of its normal "
        "level (the trailing median of the vol_window-bar estimate).",
    )
    fast_half_life: float = Field(
        default=2.0, gt=0, le=50, description="Half-life, in bars, of the fast EWMA estimate."
    )
    vol_window: int = Field(
        default=20, ge=2, description="Bars of log returns in the slow estimate and realized_vol."
    )
    baseline_bars: int | None = Field(
        default=None,
        ge=2,
        description="Longest trailing window of the normal level, in bars; None = one year of "
        "the session's bars (at least baseline_min_bars).",
    )
    baseline_min_bars: int = Field(
        default=120,
        ge=10,
        description="Bars of the slow estimate needed before the normal level is trusted; the "
        "window expands from here.",
    )
    min_dwell: int = Field(
        default=5,
        ge=1,
        description="Bars high_volatility lasts from the last bar above the threshold, that "
        "bar included, so it cannot flicker.",
    )
    trend_window: int = Field(default=200, ge=2, description="Bars in the slow trend SMA.")
    slope_window: int = Field(
        default=20, ge=1, description="Bars over which the SMA's slope is taken."
    )
    min_slope: float = Field(
        default=0.0, ge=0, description="Fractional SMA change over slope_window needed for a trend."
    )
    min_strength: float = Field(
        default=1.0,
        ge=0,
        description="Distance of close from the SMA, in ATRs, needed for a trend.",
    )
    session: Session = Field(
        default="equity",
        description="Market session for annualization and the year of bars: equity (6.5 h × "
        "252), fx (24 h × 5 days a week), crypto (24 h × 7).",
    )
    sessions: dict[str, Session] = Field(
        default_factory=dict,
        description="Per-symbol sessions: shell-glob pattern (case-insensitive) → session; the "
        "first match wins, `session` otherwise.",
    )
    bars_per_year: float | None = Field(
        default=None, gt=0, description="Annualization override; None = from session and timeframe."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_threshold(cls, data: Any) -> Any:
        if isinstance(data, dict) and "high_vol_threshold" in data:
            raise ValueError(
                "high_vol_threshold (a fixed annualized volatility) was replaced by "
                "high_vol_ratio (a multiple of the asset's own normal volatility, default 2.0)"
            )
        return data

    @model_validator(mode="after")
    def _baseline_fits(self) -> RegimeRules:
        if self.baseline_bars is not None and self.baseline_bars < self.baseline_min_bars:
            raise ValueError(
                f"baseline_bars ({self.baseline_bars}) must be at least baseline_min_bars "
                f"({self.baseline_min_bars})"
            )
        return self

    @property
    def warmup(self) -> int:
        """Bars needed before the first classification: the SMA plus its slope lag, or the
        slow estimate plus the baseline's minimum, whichever is longer (220 by default)."""
        return max(self.trend_window + self.slope_window, self.vol_window + self.baseline_min_bars)

    def for_symbol(self, symbol: str | None) -> RegimeRules:
        """These rules with `session` resolved from `sessions` for this symbol."""
        session = session_for(symbol, self.sessions, self.session)
        return self if session == self.session else self.model_copy(update={"session": session})

    def annualization(self, timeframe: str) -> float:
        """Bars a year: the override, else the session's count for the timeframe."""
        return self.bars_per_year or bars_per_year(timeframe, self.session)

    def baseline_window(self, timeframe: str) -> int:
        """Longest trailing window of the normal level: a year of bars unless set."""
        if self.baseline_bars is not None:
            return self.baseline_bars
        return max(round(self.annualization(timeframe)), self.baseline_min_bars)


def regime_features(
    close: pd.Series, atr: pd.Series, timeframe: str, rules: RegimeRules
) -> pd.DataFrame:
    """The measurements the rule reads: sma_trend, trend_slope, trend_strength, realized_vol
    (annualized 20-bar std, shown in prompts), vol_fast and vol_normal (annualized RMS) and
    vol_ratio (the larger of the fast and slow estimates over the normal level)."""
    trend = sma(close, rules.trend_window)
    log_ret = np.log(close).diff()
    w = rules.vol_window
    std = log_ret.rolling(w, min_periods=w).std().to_numpy()
    sq = log_ret.pow(2)
    fast = np.sqrt(sq.ewm(halflife=rules.fast_half_life, adjust=False, min_periods=w).mean())
    slow = np.sqrt(sq.rolling(w, min_periods=w).mean())
    normal = slow.rolling(
        rules.baseline_window(timeframe), min_periods=rules.baseline_min_bars
    ).median().to_numpy()
    slow_a, fast_a = slow.to_numpy(), fast.to_numpy()
    now = np.where(np.isnan(slow_a), np.nan, np.fmax(fast_a, slow_a))
    with np.errstate(divide="ignore", invalid="ignore"):
        # A dead-flat history (normal 0): any move is a shock (inf), no move is calm (0).
        ratio = np.where((normal == 0) & (now == 0), 0.0, now / normal)
    scale = np.sqrt(rules.annualization(timeframe))
    return pd.DataFrame(
        {
            "sma_trend": trend,
            "trend_slope": trend / trend.shift(rules.slope_window) - 1.0,
            "trend_strength": (close - trend) / atr.where(atr > 0),
            "realized_vol": std * scale,
            "vol_fast": fast_a * scale,
            "vol_normal": normal * scale,
            "vol_ratio": ratio,
        },
        index=close.index,
    )


def classify(features: pd.DataFrame, close: pd.Series, rules: RegimeRules) -> pd.Series:
    """Regime label per bar (object dtype; None during warm-up), vectorized over the frame."""
    trend, slope = features["sma_trend"].to_numpy(), features["trend_slope"].to_numpy()
    ratio, price = features["vol_ratio"].to_numpy(), close.to_numpy()
    # A zero ATR (flat bars) leaves strength NaN: treat it as "no trend", not as missing data.
    strength = np.nan_to_num(features["trend_strength"].to_numpy(), nan=0.0)
    ready = ~(np.isnan(trend) | np.isnan(slope) | np.isnan(ratio))
    above = (ratio >= rules.high_vol_ratio).astype(float)
    # held min_dwell bars: a trigger on any of the last min_dwell bars (a causal window sum)
    high_vol = np.convolve(above, np.ones(rules.min_dwell))[: len(above)] > 0
    with np.errstate(invalid="ignore"):
        bull = (price > trend) & (slope > rules.min_slope) & (strength >= rules.min_strength)
        bear = (price < trend) & (slope < -rules.min_slope) & (strength <= -rules.min_strength)
    labels = np.select([high_vol, bull, bear], ["high_volatility", "bull", "bear"], "sideways")
    labels = labels.astype(object)
    labels[~ready] = None
    return pd.Series(labels, index=close.index, dtype=object)
