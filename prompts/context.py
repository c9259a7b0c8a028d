"""The market context a prompt is rendered from: what the model is told about one bar.

It crosses boundaries (backtest → router → audit), so it is a strict pydantic model: unknown keys,
NaN/inf and out-of-range values are rejected with an error naming the field, because a prompt built
from a NaN RSI would still look plausible to the model and to a reader.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Timeframe = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]
Regime = Literal["bull", "bear", "sideways", "high_volatility"]
Style = Literal["scalping", "swing", "position"]
Direction = Literal["bullish", "bearish", "neutral"]
PatternName = Literal[
    "bullish_engulfing",
    "bearish_engulfing",
    "hammer",
    "shooting_star",
    "doji",
    "breakout",
    "breakdown",
    "golden_cross",
    "death_cross",
]

TIMEFRAMES: tuple[str, ...] = get_args(Timeframe)
REGIMES: tuple[str, ...] = get_args(Regime)

#: Trading style a timeframe implies; 30m joins swing (holding hours to days rather than minutes).
STYLE_BY_TIMEFRAME: dict[str, Style] = {
    "1m": "scalping",
    "5m": "scalping",
    "15m": "scalping",
    "30m": "swing",
    "1h": "swing",
    "4h": "swing",
    "1d": "swing",
    "1w": "position",
}

#: Which way each pattern leans.
PATTERN_DIRECTION: dict[str, Direction] = {
    "bullish_engulfing": "bullish",
    "bearish_engulfing": "bearish",
    "hammer": "bullish",
    "shooting_star": "bearish",
    "doji": "neutral",
    "breakout": "bullish",
    "breakdown": "bearish",
    "golden_cross": "bullish",
    "death_cross": "bearish",
}

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Indicators(BaseModel):
    """Indicator values on the context's bar (periods are fixed; see `prompts.indicators`)."""

    model_config = _STRICT

    rsi: float = Field(ge=0, le=100, description="Wilder RSI(14).")
    macd: float = Field(description="MACD(12,26) line: EMA12 − EMA26.")
    macd_signal: float = Field(description="EMA(9) of the MACD line.")
    macd_hist: float = Field(description="MACD line − signal.")
    ema_fast: float = Field(description="EMA(20) of close.")
    ema_slow: float = Field(description="EMA(50) of close.")
    atr: float = Field(ge=0, description="Wilder ATR(14), price units.")
    bb_width: float = Field(ge=0, description="Bollinger(20, 2) width: (upper − lower) / middle.")
    volume_change: float = Field(
        ge=-1, description="Volume vs the previous 20 bars' average, minus 1 (0.5 = +50%)."
    )
    sma_trend: float = Field(
        description="Slow trend SMA (RegimeRules.trend_window, 200 by default)."
    )
    realized_vol: float = Field(
        ge=0,
        description="Std of log returns over RegimeRules.vol_window bars (20 by default), "
        "annualized with the symbol's session (prompts.sessions).",
    )


class Pattern(BaseModel):
    """A candlestick or chart pattern seen on or shortly before the context's bar."""

    model_config = _STRICT

    name: PatternName
    confidence: float = Field(
        ge=0, le=1, description="Strength of the signal, 0 weak .. 1 textbook."
    )
    bars_ago: int = Field(default=0, ge=0, description="0 = on the context's bar.")

    @property
    def direction(self) -> Direction:
        return PATTERN_DIRECTION[self.name]


class Position(BaseModel):
    """An open (or intended) position and the account it risks, for risk prompts."""

    model_config = _STRICT

    side: Literal["long", "short"] = "long"
    entry: float = Field(gt=0, description="Entry price.")
    stop: float | None = Field(default=None, gt=0, description="Protective stop price.")
    size: float = Field(ge=0, description="Units held (shares, contracts, coins).")
    account_equity: float | None = Field(
        default=None, gt=0, description="Account value, quote ccy."
    )
    max_risk_fraction: float = Field(
        default=0.01, gt=0, le=1, description="Largest loss to stop allowed, as a share of equity."
    )

    @model_validator(mode="after")
    def _stop_on_losing_side(self) -> Position:
        if self.stop is not None:
            if self.side == "long" and self.stop >= self.entry:
                raise ValueError(f"stop {self.stop} must be below entry {self.entry} for a long")
            if self.side == "short" and self.stop <= self.entry:
                raise ValueError(f"stop {self.stop} must be above entry {self.entry} for a short")
        return self

    @property
    def risk_amount(self) -> float | None:
        """Loss if the stop is hit (quote currency), when a stop is set."""
        return None if self.stop is None else abs(self.entry - self.stop) * self.size

    @property
    def risk_fraction(self) -> float | None:
        """`risk_amount` as a share of account equity, when both are known."""
        if self.risk_amount is None or self.account_equity is None:
            return None
        return self.risk_amount / self.account_equity


class MarketContext(BaseModel):
    """Everything a prompt says about one instrument at one bar."""

    model_config = _STRICT

    symbol: str = Field(min_length=1, max_length=64, description="Instrument, e.g. SPX, BTC-USD.")
    timeframe: Timeframe = Field(description="Bar size.")
    as_of: datetime = Field(description="Timestamp of the bar the context describes.")
    regime: Regime = Field(description="Market regime from `prompts.regime`.")
    last_close: float = Field(gt=0, description="Close of the as-of bar.")
    indicators: Indicators
    patterns: list[Pattern] = Field(
        default_factory=list, description="Most recent first, then most confident."
    )
    position: Position | None = Field(default=None, description="Optional position / risk inputs.")

    @property
    def style(self) -> Style:
        """Trading style the timeframe implies (scalping, swing, position)."""
        return STYLE_BY_TIMEFRAME[self.timeframe]

    def with_position(self, position: Position | dict | None) -> MarketContext:
        """The same context with another position, validated (backtests change it per bar)."""
        data = self.model_dump()
        data["position"] = position.model_dump() if isinstance(position, Position) else position
        return MarketContext.model_validate(data)

    def tags(self) -> dict[str, str]:
        """Short string labels for records (`AttemptRecord.context`)."""
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "regime": self.regime,
            "style": self.style,
        }
