"""Request-level metrics without Ray: bounded labels, the router/provider time split, the
exploration hook, and one observation per request the router answered or refused."""

from __future__ import annotations

import asyncio
import random

import pytest

from actors.core.errors import ErrorClass
from actors.policy.policies import POLICIES
from actors.routing.route import RouteRequest, RouteResult, RoutingError, RoutingTrace
from actors.shells import router_metrics
from actors.shells.metrics import Metrics, MetricsSpec
from actors.shells.router_metrics import (
    NONE,
    OTHER,
    RequestObserver,
    TopUsers,
    UserLabels,
    at_provider,
)
from tests.test_metrics import Recorder


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(router_metrics, "_clock", c)
    return c


def test_top_users_finds_the_heavy_hitters_among_many_light_ones():
    rng = random.Random(7)
    heavy = [f"desk-{i}" for i in range(5)]
    stream = [u for i, u in enumerate(heavy) for _ in range(400 - 50 * i)]
    stream += [f"user-{rng.randrange(5000)}" for _ in range(6000)]  # a long tail
    rng.shuffle(stream)
    top = TopUsers(5)
    for u in stream:
        top.add(u)
    assert all(u in top for u in heavy)
    assert sum(f"user-{i}" in top for i in range(5000)) == 0


def test_user_labels_are_bounded():
    labels = UserLabels(MetricsSpec(users=("risk-desk",), top_users=2, max_user_labels=3))
    assert labels.label(None) == NONE and labels.label("") == NONE
    assert labels.label("risk-desk") == "risk-desk"  # allow-listed: always its own value
    seen = {labels.label(f"u{i}") for i in range(1000) for _ in range(2)}
    assert len(seen - {OTHER}) <= 3  # the cap holds however many users come
    assert OTHER in seen
    only_listed = UserLabels(MetricsSpec(users=("a",), top_users=0))
    assert only_listed.label("a") == "a" and only_listed.label("b") == OTHER


class ExploringTrace(RoutingTrace):
    """A trace that carries the exploration flag (the routing branch adds it)."""

    explored: bool = True


def _result(trace: RoutingTrace, cost: float = 0.002) -> RouteResult:
    trace.chosen, trace.cost_usd = "llama", cost
    return RouteResult(request_id=trace.request_id, provider="llama", model="m", text="x",
                       finish_reason="stop", input_tokens=1, output_tokens=1, cost_usd=cost,
                       latency_s=0.0, trace=trace)


def _req(**kw) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": "hi"}], **kw)


async def test_each_request_is_counted_once_with_bounded_labels_and_the_time_split(clock):
    rec = Recorder()
    m = Metrics(make=rec)
    obs = RequestObserver(MetricsSpec(users=("desk-a",), top_users=0), m, POLICIES)

    async def route(req: RouteRequest) -> RouteResult:
        clock.advance(0.01)  # "router" work
        await asyncio.sleep(0)
        with at_provider():
            clock.advance(0.05)  # the call to a provider actor
            await asyncio.sleep(0)
        trace = RoutingTrace(request_id="r1", policy=req.policy or "cost-aware")
        if req.policy == "latency-aware":
            raise RoutingError(ErrorClass.NO_PROVIDER, "none left", trace)
        return _result(trace)

    await obs.route(_req(policy="cost-aware", user="desk-a"), route)
    await obs.route(_req(policy="made-up-policy", user="someone"), route)
    with pytest.raises(RoutingError):
        await obs.route(_req(policy="latency-aware"), route)
    m.flush()
    assert rec.total("requests") == 3
    assert rec.total("requests", policy="cost-aware", provider="llama", outcome="ok",
                     user="desk-a") == 1
    assert rec.total("requests", policy=OTHER, user=OTHER) == 1  # no free-form values
    assert rec.total("requests", outcome="no_provider", provider=NONE, user=NONE) == 1
    assert rec.total("request_cost") == pytest.approx(0.004)
    assert rec.total("request_time", part="provider") == pytest.approx(3 * 0.05)
    assert rec.total("request_time", part="router") == pytest.approx(3 * 0.01)
    assert rec.total("explored") == 0


async def test_explored_flag_on_the_trace_is_counted():
    rec = Recorder()
    m = Metrics(make=rec)
    obs = RequestObserver(MetricsSpec(), m, POLICIES)

    async def route(req: RouteRequest) -> RouteResult:
        return _result(ExploringTrace(request_id="r", policy="accuracy-first"))

    await obs.route(_req(), route)
    m.flush()
    assert rec.total("explored", policy="accuracy-first", provider="llama") == 1


async def test_provider_time_counts_for_calls_in_tasks_the_request_spawned(clock):
    rec = Recorder()
    m = Metrics(make=rec)
    obs = RequestObserver(MetricsSpec(), m, POLICIES)

    async def call(s: float = 0.03) -> None:
        await asyncio.sleep(0)
        with at_provider():
            clock.advance(s)

    async def route(req: RouteRequest) -> RouteResult:
        await asyncio.gather(asyncio.create_task(call()), asyncio.create_task(call()))
        return _result(RoutingTrace(request_id="r", policy="cost-aware"))

    async def other_request_outside() -> None:  # not inside any observed request
        await call(0.3)

    await asyncio.gather(obs.route(_req(), route), other_request_outside())
    m.flush()
    assert rec.total("request_time", part="provider") == pytest.approx(0.06)


async def test_disabled_metrics_route_untouched():
    obs = RequestObserver(MetricsSpec(), Metrics(enabled=False), POLICIES)

    async def route(req: RouteRequest) -> RouteResult:
        return _result(RoutingTrace(request_id="r", policy="cost-aware"))

    assert (await obs.route(_req(), route)).provider == "llama"
