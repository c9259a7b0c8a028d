"""Refusals are typed values (error class + scope): the router decides "every provider is
over budget" from them, never from the words of a reason."""

from __future__ import annotations

import pickle

from actors.core.budget import GLOBAL, BudgetLedger, BudgetSpec
from actors.core.errors import ErrorClass, ProviderError, Refusal, refused_for
from actors.routing.route import RouteRequest, RoutingError
from tests.test_router_core import CFG, MSG, Fake, make


def test_the_ledger_refuses_with_class_and_scope():
    ledger = BudgetLedger(BudgetSpec.model_validate(
        {"daily_usd": 10.0, "per_provider": {"claude": {"hourly_usd": 1.0}}}))
    own = ledger.blocked_reason("claude", 2.0, 0.0)
    assert isinstance(own, Refusal) and own.error_class is ErrorClass.BUDGET_EXCEEDED
    assert own.scope == "claude" and "provider claude hourly budget" in own
    every = ledger.blocked_reason("gemini", 20.0, 0.0)
    assert every is not None and every.scope == GLOBAL and "global daily budget" in every
    assert ledger.blocked_reason("gemini", 1.0, 0.0) is None


def test_a_refusal_keeps_its_fields_through_pickling_and_as_an_error():
    r = Refusal("budget_exceeded: global hourly budget $1.0000", ErrorClass.BUDGET_EXCEEDED, GLOBAL)
    back = pickle.loads(pickle.dumps(r))
    assert (back, back.error_class, back.scope) == (r, ErrorClass.BUDGET_EXCEEDED, GLOBAL)
    err = pickle.loads(pickle.dumps(r.error("claude")))  # as it crosses Ray
    assert isinstance(err, ProviderError) and err.error_class is ErrorClass.BUDGET_EXCEEDED
    assert isinstance(err.message, Refusal) and err.message.scope == GLOBAL


def test_refused_for_needs_every_reason_typed():
    budget = Refusal("x", ErrorClass.BUDGET_EXCEEDED, GLOBAL)
    assert refused_for([budget, budget], ErrorClass.BUDGET_EXCEEDED)
    assert not refused_for([], ErrorClass.BUDGET_EXCEEDED)
    assert not refused_for([budget, "budget_exceeded: text only"], ErrorClass.BUDGET_EXCEEDED)


async def test_every_provider_over_the_routers_budget_is_budget_exceeded():
    router, _ = make(Fake(), budgets={"hourly_usd": 1e-9})
    try:
        await router.route(RouteRequest(messages=MSG))
        raise AssertionError("a request over every budget was answered")
    except RoutingError as e:
        assert e.error_class is ErrorClass.BUDGET_EXCEEDED
        assert "every provider is over budget" in e.message
        assert all(isinstance(r, Refusal) for r in e.trace.excluded.values())


async def test_providers_own_budget_errors_are_not_the_routers_budget():
    """Every provider failed with its *own* upstream error class `budget_exceeded` (its text
    starts with those words): the router's limits refused nobody, so this is no provider
    could answer, not an HTTP 402 about the router's budget (the old prefix check said so)."""
    router, _ = make(Fake({n: ["budget_exceeded"] * 3 for n in CFG.names}))
    try:
        await router.route(RouteRequest(messages=MSG))
        raise AssertionError("every provider failed, yet the request was answered")
    except RoutingError as e:
        assert e.error_class is ErrorClass.NO_PROVIDER, e.message
        assert "no provider could answer" in e.message

