"""Budget ledger: reservations keep spend under every limit; settling fixes the books."""

from __future__ import annotations

import pytest

from actors.core.budget import BudgetLedger, BudgetSpec
from actors.core.errors import ErrorClass, ProviderError

NOW = 1_700_000_000.0


def ledger(**kw) -> BudgetLedger:
    return BudgetLedger(BudgetSpec.model_validate(kw))


def test_reserve_refuses_past_the_limit():
    led = ledger(hourly_usd=1.0)
    r1 = led.reserve("a", 0.6, NOW)
    with pytest.raises(ProviderError) as info:
        led.reserve("b", 0.6, NOW)
    assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
    assert "global hourly budget $1.0000" in info.value.message
    led.settle(r1, 0.1, NOW)  # real cost far below the worst case frees room
    led.reserve("b", 0.6, NOW)


def test_concurrent_reservations_never_exceed():
    led = ledger(daily_usd=0.05)
    granted = []
    for _ in range(64):
        try:
            granted.append(led.reserve("p", 0.004, NOW))
        except ProviderError:
            pass
    assert len(granted) == 12  # 12 × 0.004 = 0.048 ≤ 0.05 < 13 × 0.004
    for r in granted:
        led.settle(r, 0.004, NOW)
    spent = [row for row in led.status(NOW) if row["window"] == "daily"][0]["spent_usd"]
    assert spent <= 0.05


def test_per_provider_limit_and_soft_warning():
    led = ledger(per_provider={"claude": {"hourly_usd": 0.10}}, soft_limit=0.8)
    assert led.blocked_reason("gemini", 5.0, NOW) is None  # no global limit
    r = led.reserve("claude", 0.09, NOW)
    warnings = led.settle(r, 0.085, NOW)
    (w,) = warnings
    assert (w.scope, w.window) == ("claude", "hourly") and "80%" in w.message
    assert led.settle(r, 0.085, NOW) == []  # settling twice is a no-op
    assert "provider claude hourly" in led.blocked_reason("claude", 0.02, NOW)


def test_windows_roll_over_and_seed():
    led = ledger(hourly_usd=1.0, daily_usd=10.0)
    led.seed("*", "hourly", 0.95, NOW)
    assert led.blocked_reason("a", 0.1, NOW) is not None
    next_hour = BudgetLedger.window_start("hourly", NOW) + 3600 + 1
    assert led.blocked_reason("a", 0.1, next_hour) is None


def test_bad_budget_config_names_key():
    with pytest.raises(ValueError, match="hourly_usd"):
        BudgetSpec.model_validate({"hourly_usd": -1})
