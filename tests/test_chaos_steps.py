"""The chaos run's budget step (tools.chaos_steps.py) against the real budget ledger:
requests that reserve between reading the budgets and setting one must not be able to
spend past it (the PostgreSQL chaos run's $0.0003 overspend)."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from actors.core.budget import BudgetLedger, BudgetSpec
from actors.core.errors import ErrorClass
from actors.routing.route import RoutingError, RoutingTrace
from tools.chaos_steps import (
    BUDGET_MARGIN_USD,
    committed_usd,
    lower_budget,
    router_answers,
    run_out_budget,
)

NOW = 1_800_000_000.0


class Router:
    """`budgets`/`set_budgets` as the router answers them, over a real BudgetLedger; a
    burst of requests reserves right after the first read (a router just back from a
    restart releasing the requests that waited for it)."""

    def __init__(self, burst: int) -> None:
        self.ledger = BudgetLedger(BudgetSpec())
        self.ledger.seed("*", "hourly", 0.0759, NOW)
        self.burst, self.held = burst, []

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.ledger.status(NOW))

    def budgets(self) -> pd.DataFrame:
        out = self.table()
        for _ in range(self.burst):  # reserved after the table above was read
            self.held.append(self.ledger.reserve("claude", 0.04, NOW))
        self.burst = 0
        return out

    def set_budgets(self, patch: dict) -> pd.DataFrame:
        self.ledger.spec = BudgetSpec(hourly_usd=patch["hourly_usd"])
        return self.table()

    def finish(self, actual: float) -> float:
        """The requests in flight settle (each below its worst case); spend in the end."""
        for res in self.held:
            self.ledger.settle(res, actual, NOW)
        return committed_usd(self.table())[0]


def test_a_budget_set_from_a_stale_reading_is_raised_to_what_was_committed() -> None:
    router = Router(burst=24)
    _, committed = committed_usd(router.budgets())
    stale = committed + BUDGET_MARGIN_USD
    assert router.finish(0.0) <= stale  # nothing in flight spends: fine either way
    router = Router(burst=24)
    _, committed = committed_usd(router.budgets())
    budget = lower_budget(router, committed)
    assert budget > stale  # the burst's reservations are covered
    assert router.finish(0.04) <= budget + 1e-12  # every request spent its worst case


def test_the_old_way_overspends_the_same_burst() -> None:
    """What the run did before: set spent + reserved (as read) + margin, once."""
    router = Router(burst=24)
    _, committed = committed_usd(router.budgets())
    budget = committed + BUDGET_MARGIN_USD
    router.set_budgets({"hourly_usd": budget})
    assert router.finish(0.000711) > budget  # one cheap answer each is already too much


def test_without_a_burst_the_budget_is_the_committed_spend_plus_the_margin() -> None:
    router = Router(burst=0)
    _, committed = committed_usd(router.budgets())
    assert lower_budget(router, committed) == pytest.approx(0.0759 + BUDGET_MARGIN_USD)


class _Router:
    def __init__(self, error: ErrorClass | None) -> None:
        self.error = error

    async def acomplete(self, *_a, **_kw) -> str:
        if self.error is not None:
            raise RoutingError(self.error, "refused", RoutingTrace(request_id="probe", policy=""))
        return "ok"


def test_a_router_refusing_for_budget_has_recovered_one_unreachable_has_not() -> None:
    """The run's budget may have run out before the killed router came back: its refusal
    is still an answer (the PG run reported a router that "never recovered")."""
    asyncio.run(router_answers(_Router(None)))
    asyncio.run(router_answers(_Router(ErrorClass.BUDGET_EXCEEDED)))
    with pytest.raises(RoutingError):
        asyncio.run(router_answers(_Router(ErrorClass.INTERNAL)))


def test_the_budget_tightens_once_the_burst_settles_and_then_runs_out() -> None:
    """Covering the burst's worst cases alone left a budget that never ran out (a PG run
    had no 402 at all); as the burst settles at what it spent, the limit comes down."""
    router = Router(burst=24)
    _, committed = committed_usd(router.budgets())
    settled = []

    def sleep(_s: float) -> None:  # the burst finishes while the run waits
        if not settled:
            settled.append(router.finish(0.000711))

    budget = run_out_budget(router, committed, sleep=sleep)
    spent = committed_usd(router.table())[0]
    assert spent <= budget <= spent + BUDGET_MARGIN_USD + 1e-12  # tight again
    assert router.ledger.spec.hourly_usd == budget  # the limit in force is the one reported
    assert router.ledger.blocked_reason("claude", 0.04, NOW)  # the next dear request: refused
