"""Market regime from trend and realized volatility.

The rule, checked in this order on every bar:

1. **high_volatility** — annualized realized volatility of log returns over `vol_window` bars is
   above `high_vol_threshold`. Checked first: in a crash the trend is also down, but what a trader
   must hear first is that ranges are wide (wider stops, smaller size).
2. **bull** — close above the `trend_window` SMA, that SMA rising over `slope_window` bars by more
   than `min_slope`, and the close at least `min_strength` ATRs above it.
3. **bear** — the mirror image.
4. **sideways** — everything else (price near a flat or crossing trend line).

Distance is measured in ATRs so the same threshold works on 5-minute and weekly bars. The defaults
(20-bar vol > 35 %, SMA 200, 20-bar slope, 1 ATR) call Sep–Dec 2008 on the S&P 500 bear or
high_volatility and most of 2004–2006 bull; see tests/test_prompts_regime.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from prompts.context import BARS_PER_YEAR
from prompts.indicators import sma


class RegimeRules(BaseModel):
    """Thresholds of the regime rule; defaults suit daily equity-index bars."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    vol_window: int = Field(default=20, ge=2, description="Bars of log returns in realized vol.")
    high_vol_threshold: float = Field(
        default=0.35,
        gt=0,
        description="Annualized realized vol above which the regime is high_volatility.",
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
    bars_per_year: float | None = Field(
        default=None, gt=0, description="Annualization; None = from the timeframe (equity session)."
    )

    @property
    def warmup(self) -> int:
        """Bars needed before the first classification (SMA plus its slope lag)."""
        return max(self.trend_window + self.slope_window, self.vol_window + 1)

    def annualization(self, timeframe: str) -> float:
        return self.bars_per_year or BARS_PER_YEAR[timeframe]


def regime_features(
    close: pd.Series, atr: pd.Series, timeframe: str, rules: RegimeRules
) -> pd.DataFrame:
    """The measurements the rule reads: sma_trend, trend_slope, trend_strength, realized_vol."""
    trend = sma(close, rules.trend_window)
    log_ret = np.log(close).diff()
    vol = log_ret.rolling(rules.vol_window, min_periods=rules.vol_window).std()
    return pd.DataFrame(
        {
            "sma_trend": trend,
            "trend_slope": trend / trend.shift(rules.slope_window) - 1.0,
            "trend_strength": (close - trend) / atr.where(atr > 0),
            "realized_vol": vol * np.sqrt(rules.annualization(timeframe)),
        },
        index=close.index,
    )


def classify(features: pd.DataFrame, close: pd.Series, rules: RegimeRules) -> pd.Series:
    """Regime label per bar (object dtype; None during warm-up), vectorized over the frame."""
    trend, slope = features["sma_trend"], features["trend_slope"]
    strength, vol = features["trend_strength"], features["realized_vol"]
    # A zero ATR (flat bars) leaves strength NaN: treat it as "no trend", not as missing data.
    strength = strength.fillna(0.0).where(trend.notna())
    ready = trend.notna() & slope.notna() & vol.notna()
    high_vol = vol > rules.high_vol_threshold
    bull = (close > trend) & (slope > rules.min_slope) & (strength >= rules.min_strength)
    bear = (close < trend) & (slope < -rules.min_slope) & (strength <= -rules.min_strength)
    labels = np.select([high_vol, bull, bear], ["high_volatility", "bull", "bear"], "sideways")
    return pd.Series(labels, index=close.index, dtype=object).where(ready, None)
