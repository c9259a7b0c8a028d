"""The router's batch path as plain code (actors/routing/batch_route.py): the same decision as a
synchronous request, the budget reserved at the batch price, an item's outcome recorded
like a synchronous answer (checked output, budget settled, attempt and request records)."""

from __future__ import annotations

import time

import pytest

from actors.clients.base import Result
from actors.clients.batch import ItemOutcome
from actors.core.budget import BudgetSpec
from actors.core.cost import worst_case_cost
from actors.core.errors import ErrorClass
from actors.core.params import prompt_tokens
from actors.core.records import AttemptRecord, RequestRecord
from actors.routing.batch_route import BatchDesk, BatchSettle, PlanKind
from actors.routing.route import RouteRequest, RouteResult, RoutingError
from tests.test_router_core import MSG, Fake, make

SIGNAL = '{"direction": "long", "confidence": 0.7, "reasoning": "trend"}'


def _req(rid: str, **kw) -> RouteRequest:
    return RouteRequest(messages=MSG, request_id=rid, max_tokens=500, **kw)


def _global(router) -> dict:
    st = router.ledger.status(time.time())
    return next(r for r in st if r["scope"] == "*" and r["window"] == "hourly")


async def test_plan_reserves_the_batch_price_and_settle_records_like_a_sync_answer():
    fake = Fake()
    router, sink = make(fake, budgets={"hourly_usd": 100.0})
    desk = BatchDesk(router)
    req = _req("b-1", provider="claude")
    plan = await desk.plan(req)
    assert plan.kind is PlanKind.BATCH and plan.provider == "claude" and not fake.calls
    spec = router.providers["claude"]
    full = worst_case_cost(spec, prompt_tokens(req.completion()), 500)
    assert plan.reserved_usd == pytest.approx(full * 0.5)
    assert _global(router)["reserved_usd"] == pytest.approx(full * 0.5)
    res = Result(provider="claude", model=spec.model, text="sure", input_tokens=100,
                 output_tokens=20, finish_reason="stop", latency_s=0.0, cost_usd=0.0004)
    out = desk.settle(BatchSettle(request=req, provider="claude",
                                  outcome=ItemOutcome(custom_id="c-0", result=res)))
    assert isinstance(out, RouteResult) and out.cost_usd == pytest.approx(0.0004)
    atts = [x for x in sink if isinstance(x, AttemptRecord)]
    reqs = [x for x in sink if isinstance(x, RequestRecord)]
    assert len(atts) == 1 and atts[0].cost_usd == pytest.approx(0.0004) and atts[0].response
    assert len(reqs) == 1 and reqs[0].ok and reqs[0].cost_usd == pytest.approx(0.0004)
    assert _global(router)["reserved_usd"] == pytest.approx(0.0)
    assert _global(router)["spent_usd"] == pytest.approx(0.0004)


async def test_an_unusable_answer_is_billed_and_a_failure_classified():
    router, sink = make(Fake())
    desk = BatchDesk(router)
    req = _req("b-2", provider="gemini", output="trade_signal")
    await desk.plan(req)
    spec = router.providers["gemini"]
    bad = Result(provider="gemini", model=spec.model, text="no json here", input_tokens=90,
                 output_tokens=10, finish_reason="stop", latency_s=0.0, cost_usd=0.0002)
    out = desk.settle(BatchSettle(request=req, provider="gemini",
                                  outcome=ItemOutcome(custom_id="c", result=bad)))
    assert isinstance(out, RoutingError) and out.error_class == ErrorClass.INVALID_RESPONSE
    assert out.trace.cost_usd == pytest.approx(0.0002)  # billed all the same
    expired = desk.settle(BatchSettle(request=_req("b-3"), provider="gemini", outcome=ItemOutcome(
        custom_id="d", error_class=ErrorClass.TIMEOUT, error="item expired")))
    assert isinstance(expired, RoutingError) and expired.error_class == ErrorClass.TIMEOUT
    assert expired.trace.cost_usd == 0.0


async def test_no_batch_api_goes_synchronously_and_the_budget_still_applies():
    router, _ = make(Fake())
    desk = BatchDesk(router)
    plan = await desk.plan(_req("b-4", provider="mixtral"))
    assert plan.kind is PlanKind.SYNC and plan.provider == "mixtral"
    router.set_budgets(BudgetSpec(hourly_usd=1e-6))
    refused = await desk.plan(_req("b-5", provider="claude"))
    assert refused.kind is PlanKind.FAILED
    assert refused.error_class == ErrorClass.BUDGET_EXCEEDED
