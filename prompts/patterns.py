"""Candlestick and chart patterns with a confidence in [0, 1], vectorized over a whole frame.

Our own small set rather than TA-Lib's 61 CDL functions: the prompt needs a handful of patterns a
trader would name, and a confidence, which TA-Lib does not give (it returns ±100). Confidence mixes
how cleanly the shape is formed with how large it is relative to ATR — a hammer whose range is a
tenth of a normal bar is noise. Definitions:

- engulfing: this body engulfs the previous, opposite-coloured body (TA-Lib's CDLENGULFING rule:
  one end may be equal). Confidence: body vs ATR, and how much larger than the engulfed body.
- hammer / shooting star: small body (≤ 1/3 of range), the shadow on one side ≥ 2 bodies and
  ≥ 60 % of range, the other shadow ≤ 15 % of range, after a move *into* it (previous close below /
  above EMA 20). Confidence: shadow share of range, and range vs ATR.
- doji: body ≤ 10 % of range. Confidence: how small the body is, and range vs ATR.
- breakout / breakdown: close beyond the highest high / lowest low of the previous `CHANNEL` bars.
  Confidence: distance beyond it in ATRs, and volume vs its average.
- golden / death cross: SMA 50 crosses above / below SMA 200 on this bar. Confidence: 0.3 for any
  cross, up to 1 as the fast SMA's 10-bar move approaches one ATR (a steep cross, not a drift).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prompts.indicators import sma

CHANNEL = 20
CROSS_FAST, CROSS_SLOW = 50, 200
PATTERN_WARMUP = CROSS_SLOW + 1


def _scale(x: pd.Series, full: float) -> pd.Series:
    """0 at x ≤ 0, 1 at x ≥ full, linear between."""
    return (x / full).clip(0.0, 1.0)


def detect_patterns(
    df: pd.DataFrame, atr: pd.Series, ema_fast: pd.Series, volume_change: pd.Series
) -> pd.DataFrame:
    """One column per pattern name: confidence where it fires on that bar, NaN where it does not."""
    o, h, lo, c = df["open"], df["high"], df["low"], df["close"]
    body = (c - o).abs()
    rng = h - lo
    upper = h - np.maximum(o, c)
    lower = np.minimum(o, c) - lo
    safe_atr = atr.where(atr > 0)
    safe_rng = rng.where(rng > 0)
    size = _scale(rng / safe_atr, 1.5)

    o1, c1 = o.shift(1), c.shift(1)
    white, black = c >= o, c < o
    white1, black1 = c1 >= o1, c1 < o1
    body1 = (c1 - o1).abs()
    engulf_bull = white & black1 & (((c >= o1) & (o < c1)) | ((c > o1) & (o <= c1)))
    engulf_bear = black & white1 & (((o >= c1) & (c < o1)) | ((o > c1) & (c <= o1)))
    engulf_conf = 0.6 * _scale(body / safe_atr, 1.0) + 0.4 * _scale(
        body / body1.where(body1 > 0) - 1.0, 1.0
    ).fillna(1.0)

    small_body = body <= rng / 3
    hammer = (
        (rng > 0)
        & small_body
        & (lower >= 2 * body)
        & (lower >= 0.6 * rng)
        & (upper <= 0.15 * rng)
        & (c1 < ema_fast.shift(1))
    )
    star = (
        (rng > 0)
        & small_body
        & (upper >= 2 * body)
        & (upper >= 0.6 * rng)
        & (lower <= 0.15 * rng)
        & (c1 > ema_fast.shift(1))
    )
    hammer_conf = 0.5 * _scale(lower / safe_rng - 0.6, 0.3) + 0.5 * size
    star_conf = 0.5 * _scale(upper / safe_rng - 0.6, 0.3) + 0.5 * size

    doji = (rng > 0) & (body <= 0.1 * rng)
    doji_conf = 0.5 * (1.0 - body / (0.1 * safe_rng)) + 0.5 * _scale(rng / safe_atr, 1.0)

    prior_high = h.shift(1).rolling(CHANNEL, min_periods=CHANNEL).max()
    prior_low = lo.shift(1).rolling(CHANNEL, min_periods=CHANNEL).min()
    surge = _scale(volume_change, 1.0).fillna(0.0)
    breakout_conf = 0.6 * _scale((c - prior_high) / safe_atr, 1.0) + 0.4 * surge
    breakdown_conf = 0.6 * _scale((prior_low - c) / safe_atr, 1.0) + 0.4 * surge

    fast, slow = sma(c, CROSS_FAST), sma(c, CROSS_SLOW)
    above, above1 = fast > slow, fast.shift(1) > slow.shift(1)
    known = slow.notna() & slow.shift(1).notna()
    steep = _scale((fast - fast.shift(10)).abs() / safe_atr, 1.0).fillna(0.0)
    cross_conf = 0.3 + 0.7 * steep

    fired = {
        "bullish_engulfing": (engulf_bull, engulf_conf),
        "bearish_engulfing": (engulf_bear, engulf_conf),
        "hammer": (hammer, hammer_conf),
        "shooting_star": (star, star_conf),
        "doji": (doji, doji_conf),
        "breakout": (c > prior_high, breakout_conf),
        "breakdown": (c < prior_low, breakdown_conf),
        "golden_cross": (known & above & ~above1, cross_conf),
        "death_cross": (known & ~above & above1, cross_conf),
    }
    # Confidence needs an ATR; before ATR exists (warm-up) a pattern is not reported.
    return pd.DataFrame(
        {
            name: conf.clip(0.0, 1.0).where(mask & conf.notna())
            for name, (mask, conf) in fired.items()
        },
        index=df.index,
    )
