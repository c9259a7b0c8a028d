"""Steps of the chaos run that race the system they test (tools/chaos.py).

Whether the router is back after its kill: it is once it *answers* a routed request — a
refusal for budget is an answer too (the run's budget may already have run out by then;
counting only successes, the PostgreSQL run reported a router that never recovered).

The budget step: the global hourly budget set just above what is already committed, so
that it runs out mid-run — and the run can check that spend stayed within it.

Requests keep reserving their worst-case cost between reading the budgets and setting one
(a burst right after a router restart reserves dollars within milliseconds). A limit set
below what in-flight requests already reserved cannot stop them: they finish and spend past
it, which the PostgreSQL chaos run once reported as an overspend of $0.0003 (the router's
recovery probe, reserved a moment before the lower limit landed). So the limit is checked
against the ledger as it was when it took effect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.core.errors import ErrorClass
from actors.routing.route import RoutingError


async def router_answers(llm: Any) -> None:
    """Route one small request; returns once a live router decided it (raises while the
    router is restarting or unreachable)."""
    try:
        await llm.acomplete("probe", timeout=5, context={"task": "probe"})
    except RoutingError as exc:
        if exc.error_class is not ErrorClass.BUDGET_EXCEEDED:
            raise


#: What the budget leaves above the spend already committed: a few cheap answers.
BUDGET_MARGIN_USD = 0.0005


def committed_usd(status: Any) -> tuple[float, float]:
    """(settled, settled + reserved) of the global hourly window in a budgets table."""
    row = status[(status.scope == "*") & (status.window == "hourly")].iloc[0]
    return float(row.spent_usd), float(row.spent_usd + row.reserved_usd)


def lower_budget(llm: Any, committed: float, margin: float = BUDGET_MARGIN_USD,
                 tries: int = 20) -> float:
    """Set the global hourly budget just above the spend committed *when it takes effect*.

    Requests keep reserving between reading the budgets and setting one (a burst right
    after a router restart reserves dollars in milliseconds), and a limit set below what
    in-flight requests already reserved cannot stop them: they finish and spend past it.
    `set_budgets` answers with the ledger as it was when the limit took effect, so set,
    look, and raise it until it covers everything committed by then; every reservation
    after that is checked against it. Returns the limit in force."""
    budget = committed + margin
    for _ in range(tries):
        _, now_committed = committed_usd(llm.set_budgets({"hourly_usd": budget}))
        if now_committed <= budget:
            return budget
        budget = now_committed + margin
    raise RuntimeError(f"could not set a budget above the committed spend in {tries} tries "
                       f"(last ${budget:.4f})")


def run_out_budget(llm: Any, committed: float, margin: float = BUDGET_MARGIN_USD,
                   rounds: int = 10, every_s: float = 0.3,
                   sleep: Callable[[float], None] = time.sleep) -> float:
    """`lower_budget`, then tighten it while what was in flight settles: reservations are
    worst cases (a burst of them can hold dollars that end up cents), so a limit covering
    them would not run out for the rest of the run. Each lower limit again covers what is
    committed when it takes effect, so spend never passes the last one. Returns it."""
    budget = lower_budget(llm, committed, margin)
    for _ in range(rounds):
        sleep(every_s)
        _, now = committed_usd(llm.budgets())
        if now + margin >= budget - 1e-12:  # as tight as it gets
            break
        budget = lower_budget(llm, now, margin)  # the limit in force from now on
    return budget
