"""A (re)started router's budgets start from recorded spend (actors/core/budget_seeding.py),
tested without Ray: the tracker's and the providers' answers are plain coroutines."""

from __future__ import annotations

import asyncio

from actors.core.budget import BudgetLedger, BudgetSpec
from actors.core.budget_seeding import BudgetSeeding

NOW = 1_700_000_000.0


def _spent(ledger: BudgetLedger) -> dict[tuple[str, str], float]:
    return {(str(r["scope"]), str(r["window"])): float(r["spent_usd"] or 0.0)
            for r in ledger.status(NOW)}


def _seeding(spec: dict, recorded: dict[str | None, float], pending: dict[str, float],
             asked: list) -> tuple[BudgetLedger, BudgetSeeding]:
    ledger = BudgetLedger(BudgetSpec.model_validate(spec))

    async def spend_since(since: float, provider: str | None, simulated: bool) -> float:
        asked.append((provider, simulated))
        return recorded.get(provider, 0.0)

    async def pending_usd() -> dict[str, float]:
        return pending

    return ledger, BudgetSeeding(ledger, spend_since, pending_usd, simulated=True,
                                 clock=lambda: NOW)


def test_start_seeds_every_scope_with_recorded_and_pending_spend_once():
    asked: list = []
    ledger, seeding = _seeding({"daily_usd": 10, "per_provider": {"claude": {"hourly_usd": 2}}},
                               {None: 3.0, "claude": 1.0}, {"claude": 0.5, "gpt": 0.25}, asked)
    asyncio.run(seeding.at_start())
    spent = _spent(ledger)
    assert spent[("*", "daily")] == 3.75  # recorded + everything pending
    assert spent[("claude", "hourly")] == 1.5  # recorded + its own pending
    assert all(sim for _, sim in asked)  # simulated spend only, for a simulated router
    n = len(asked)
    asyncio.run(seeding.at_start())  # a second start-up call seeds nothing again
    assert len(asked) == n


def test_a_cap_added_later_is_seeded_alone_and_a_dead_tracker_leaves_zero(caplog):
    asked: list = []
    ledger, seeding = _seeding({"daily_usd": 10}, {None: 1.0, "gpt": 0.5}, {}, asked)
    asyncio.run(seeding.at_start())
    ledger.spec = BudgetSpec.model_validate({"daily_usd": 10,
                                             "per_provider": {"gpt": {"daily_usd": 1}}})
    asked.clear()
    asyncio.run(seeding.new_scopes())
    assert {p for p, _ in asked} == {"gpt"} and _spent(ledger)[("gpt", "daily")] == 0.5

    async def down(*_: object) -> float:
        raise ConnectionError("tracker restarting")

    ledger2 = BudgetLedger(BudgetSpec.model_validate({"daily_usd": 10}))
    broken = BudgetSeeding(ledger2, down, seeding._pending, simulated=False, clock=lambda: NOW)
    asyncio.run(broken.at_start())
    assert _spent(ledger2)[("*", "daily")] == 0.0
    assert "could not seed budgets" in caplog.text
