"""MarketContext: what is accepted, and that bad values are refused naming the field."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from prompts.context import STYLE_BY_TIMEFRAME, TIMEFRAMES, MarketContext, Pattern, Position


def _data(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "symbol": "SPX",
        "timeframe": "1d",
        "as_of": datetime(2008, 10, 10),
        "regime": "bear",
        "last_close": 899.22,
        "indicators": {
            "rsi": 23.0,
            "macd": -77.0,
            "macd_signal": -50.3,
            "macd_hist": -26.7,
            "ema_fast": 1098.1,
            "ema_slow": 1182.5,
            "atr": 54.6,
            "bb_width": 0.363,
            "volume_change": 0.62,
            "sma_trend": 1314.7,
            "realized_vol": 0.628,
        },
        "patterns": [{"name": "doji", "confidence": 0.84}],
        "position": {"entry": 900.0, "stop": 850.0, "size": 100, "account_equity": 100_000},
    }
    for key, value in over.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            data[outer] = {**data[outer], inner: value}
        else:
            data[key] = value
    return data


def test_valid_context_round_trips_through_json() -> None:
    ctx = MarketContext.model_validate(_data())
    again = MarketContext.model_validate_json(ctx.model_dump_json())
    assert again == ctx
    assert ctx.style == "swing"
    assert ctx.patterns[0].direction == "neutral" and ctx.patterns[0].bars_ago == 0
    assert ctx.tags() == {"symbol": "SPX", "timeframe": "1d", "regime": "bear", "style": "swing"}


def test_position_risk_numbers() -> None:
    pos = MarketContext.model_validate(_data()).position
    assert pos is not None
    assert pos.risk_amount == pytest.approx(5000.0)
    assert pos.risk_fraction == pytest.approx(0.05)
    assert Position(entry=10, size=1).risk_amount is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"indicators.rsi": 100.5}, "indicators.rsi"),
        ({"indicators.rsi": -1}, "indicators.rsi"),
        ({"indicators.macd": math.nan}, "indicators.macd"),
        ({"indicators.atr": math.inf}, "indicators.atr"),
        ({"indicators.atr": -0.1}, "indicators.atr"),
        ({"last_close": math.nan}, "last_close"),
        ({"last_close": 0}, "last_close"),
        ({"patterns": [{"name": "doji", "confidence": 1.2}]}, "patterns.0.confidence"),
        ({"patterns": [{"name": "doji", "confidence": -0.1}]}, "patterns.0.confidence"),
        ({"patterns": [{"name": "head_and_shoulders", "confidence": 0.5}]}, "patterns.0.name"),
        ({"regime": "crab"}, "regime"),
        ({"timeframe": "2h"}, "timeframe"),
        ({"symbol": ""}, "symbol"),
        ({"position.size": -1}, "position.size"),
        ({"position.account_equity": math.nan}, "position.account_equity"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        MarketContext.model_validate(_data(**override))
    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert field in locs
    assert field in str(info.value)


@pytest.mark.parametrize("where", ["", "indicators.", "position."])
def test_unknown_keys_are_forbidden(where: str) -> None:
    with pytest.raises(ValidationError, match="surprise"):
        MarketContext.model_validate(_data(**{f"{where}surprise": 1}))


def test_stop_on_the_wrong_side_is_rejected() -> None:
    with pytest.raises(ValidationError, match="below entry"):
        Position(side="long", entry=100, stop=101, size=1)
    with pytest.raises(ValidationError, match="above entry"):
        Position(side="short", entry=100, stop=99, size=1)
    assert Position(side="short", entry=100, stop=101, size=1).risk_amount == pytest.approx(1.0)


def test_context_is_immutable_and_with_position_revalidates() -> None:
    ctx = MarketContext.model_validate(_data())
    with pytest.raises(ValidationError):
        ctx.regime = "bull"  # type: ignore[misc]
    flat = ctx.with_position(None)
    assert flat.position is None and flat.indicators == ctx.indicators
    with pytest.raises(ValidationError, match="position.entry"):
        ctx.with_position({"entry": -5, "size": 1})


def test_every_timeframe_has_a_style() -> None:
    assert set(STYLE_BY_TIMEFRAME) == set(TIMEFRAMES)
    styles = {tf: MarketContext.model_validate(_data(timeframe=tf)).style for tf in TIMEFRAMES}
    assert {tf for tf, s in styles.items() if s == "scalping"} == {"1m", "5m", "15m"}
    assert styles["1h"] == styles["1d"] == "swing" and styles["1w"] == "position"


def test_pattern_direction() -> None:
    assert Pattern(name="hammer", confidence=0.5).direction == "bullish"
    assert Pattern(name="death_cross", confidence=0.5).direction == "bearish"
