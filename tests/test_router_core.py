"""Router core without Ray: fake provider calls, real policies, ledger and records."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.clients.base import Message, Result
from actors.config import load_config
from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord
from actors.routing.route import RouteRequest, RoutingError
from actors.routing.router import Router
from actors.rpc.messages import AttemptInfo, ProviderCall, ProviderReply

CFG = load_config()
MSG = [Message(role="user", content="Is SPY bullish?")]


class Fake:
    """Scripted providers: name → list of outcomes ('ok' or an error class)."""

    def __init__(self, script: dict[str, list[str]] | None = None, delay: float = 0.0):
        self.script = script or {}
        self.calls: list[tuple[str, ProviderCall]] = []
        self.delay = delay

    async def __call__(self, name: str, call: ProviderCall) -> ProviderReply:
        self.calls.append((name, call))
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = (self.script.get(name) or ["ok"]).pop(0) if self.script.get(name) else "ok"
        spec = CFG.provider(name)
        n = call.attempt_offset + 1
        if outcome == "dead":
            raise RuntimeError("actor died")
        if outcome == "ok":
            res = Result(provider=name, model=spec.model, text='{"direction":"long"}',
                         input_tokens=100, output_tokens=50, finish_reason="stop",
                         latency_s=0.01, cost_usd=0.001)
            return ProviderReply(provider=name, model=spec.model, result=res,
                                 parsed={"direction": "long", "confidence": 0.7},
                                 attempts=[AttemptInfo(attempt=n, ts=time.time(), ok=True,
                                                       input_tokens=100, output_tokens=50,
                                                       cost_usd=0.001, confidence=0.7,
                                                       response=res.text)])
        return ProviderReply(provider=name, model=spec.model, error_class=outcome,
                             error=f"simulated {outcome}",
                             attempts=[AttemptInfo(attempt=n, ts=time.time(), ok=False,
                                                   error_class=outcome, error="x")])


def make(fake: Fake, **cfg_updates) -> tuple[Router, list]:
    sink: list = []
    cfg = CFG.with_sections(**cfg_updates)
    return Router(cfg, fake, sink.extend), sink


async def test_routes_and_records_once():
    fake = Fake()
    router, sink = make(fake)
    r = await router.route(RouteRequest(messages=MSG, context={"regime": "bull"}))
    assert r.text and r.trace.chosen == r.provider
    assert r.trace.candidates and r.trace.policy == "accuracy-first"
    reqs = [x for x in sink if isinstance(x, RequestRecord)]
    atts = [x for x in sink if isinstance(x, AttemptRecord)]
    assert len(reqs) == 1 and reqs[0].ok and reqs[0].request_id == r.request_id
    assert len(atts) == 1 and atts[0].prompt and "SPY" in atts[0].prompt
    assert reqs[0].confidence == 0.7


async def test_fallback_on_retryable_and_invalid_output():
    fake = Fake({"claude": ["rate_limited"], "gemini": ["invalid_response"]})
    router, sink = make(fake)
    r = await router.route(RouteRequest(messages=MSG, fallbacks=["claude", "gemini", "llama"]))
    assert r.provider == "llama"
    assert [a.provider for a in r.trace.attempts] == ["claude", "gemini", "llama"]
    assert [a.attempt for a in r.trace.attempts] == [1, 2, 3]
    assert [c.attempt_offset for _, c in fake.calls] == [0, 1, 2]


async def test_bad_request_does_not_fall_back():
    fake = Fake({"claude": ["bad_request"]})
    router, sink = make(fake)
    with pytest.raises(RoutingError) as info:
        await router.route(RouteRequest(messages=MSG, fallbacks=["claude", "gemini"]))
    assert info.value.error_class.value == "bad_request"
    assert len(fake.calls) == 1
    assert sum(isinstance(x, RequestRecord) for x in sink) == 1


async def test_all_fail_gives_aggregated_error():
    fake = Fake({n: ["server"] for n in CFG.names})
    router, sink = make(fake)
    with pytest.raises(RoutingError) as info:
        await router.route(RouteRequest(messages=MSG))
    err = info.value
    assert err.error_class.value == "no_provider"
    for name in CFG.names:
        assert f"{name}: server" in err.message
    assert len(err.trace.attempts) == 5


async def test_dead_actor_falls_back_and_is_recorded():
    fake = Fake({"claude": ["dead"]})
    router, sink = make(fake)
    r = await router.route(RouteRequest(messages=MSG, fallbacks=["claude", "gemini"]))
    assert r.provider == "gemini"
    assert r.trace.attempts[0].error_class == "internal"
    assert [a.provider for a in sink if isinstance(a, AttemptRecord)] == ["claude", "gemini"]


async def test_unknown_provider_and_policy_are_bad_requests():
    router, sink = make(Fake())
    with pytest.raises(RoutingError, match="unknown provider 'nope'"):
        await router.route(RouteRequest(messages=MSG, provider="nope"))
    with pytest.raises(RoutingError, match="unknown policy 'x'"):
        await router.route(RouteRequest(messages=MSG, policy="x"))
    assert sum(isinstance(x, RequestRecord) for x in sink) == 2


async def test_pinned_provider_with_open_breaker_is_refused_with_reason():
    router, _ = make(Fake())
    snap = router.snapshots["claude"].model_copy(update={"state": "open", "open_until": time.time() + 60})
    router.update_snapshot(snap)
    with pytest.raises(RoutingError) as info:
        await router.route(RouteRequest(messages=MSG, provider="claude"))
    assert "claude: breaker_open" in info.value.message


async def test_budget_under_64_concurrent_requests():
    fake = Fake(delay=0.01)
    router, sink = make(fake, budgets={"hourly_usd": 0.5})
    reqs = [RouteRequest(messages=MSG, provider="gpt-4-turbo", max_tokens=1000) for _ in range(64)]
    out = await asyncio.gather(*(router.route(r) for r in reqs), return_exceptions=True)
    ok = [o for o in out if not isinstance(o, Exception)]
    refused = [o for o in out if isinstance(o, RoutingError)]
    assert ok and refused and len(ok) + len(refused) == 64
    assert all(e.error_class.value == "budget_exceeded" for e in refused)
    # worst case per request ≈ 1000 × $30/M + prompt = $0.03+, so at most 16 fit in $0.50
    assert len(ok) <= 16
    spent = sum(x.cost_usd for x in sink if isinstance(x, RequestRecord))
    assert spent <= 0.5


async def test_feedback_is_learned_at_once_and_recorded_after_the_request():
    router, sink = make(Fake())
    req = RouteRequest(messages=MSG, provider="gemini", context={"task": "risk"})
    r = await router.route(req)
    before = router.learner.belief("gemini", (("task", "risk"),))
    rec = router.feedback(r.request_id, 0.0)
    assert isinstance(rec, FeedbackRecord) and rec.score == 0.0
    kinds = [type(x).__name__ for x in sink]
    assert kinds[-2:] == ["RequestRecord", "FeedbackRecord"]  # journaled in this order
    after = router.learner.belief("gemini", (("task", "risk"),))
    assert after.score < before.score and after.evidence > before.evidence
    assert router.feedback("never-routed", 1.0) is None  # the tracker checks those
    with pytest.raises(ValueError, match="within 0..1"):
        router.feedback(r.request_id, 1.5)
    with pytest.raises(ValueError, match="within 0..1"):
        router.feedback(r.request_id, float("nan"))


@pytest.mark.parametrize("method", ["optimistic", "thompson"])
async def test_exploration_is_marked_bounded_and_can_be_turned_off(method):
    router, sink = make(Fake(), router={
        "exploration": {"share": 0.1, "burst": 5, "method": method}, "seed": 7})
    ctx = {"task": "analysis"}
    out = []
    for _ in range(300):  # exploration starts with the first outcome
        out.append(await router.route(RouteRequest(messages=MSG, context=ctx)))
        router.feedback(out[-1].request_id, 0.8)
    explored = [r for r in out if r.trace.explored]
    # five providers alike: the less tried ones' wider posteriors win the exploring ranking
    # (a draw, or the mean plus its bonus) now and then
    assert explored, "an exploring ranking must disagree with the greedy one sometimes"
    assert len(explored) <= 5 + 0.1 * 300 + 1
    reqs = [x for x in sink if isinstance(x, RequestRecord)]
    assert sum(x.explored for x in reqs) == len(explored)
    greedy = [await router.route(RouteRequest(messages=MSG, context=ctx, explore=False))
              for _ in range(50)]
    assert not any(r.trace.explored for r in greedy)
    assert len({r.provider for r in greedy}) == 1  # deterministic


async def test_cost_aware_trace_has_the_target_and_the_price():
    router, sink = make(Fake())
    r = await router.route(RouteRequest(messages=MSG, policy="cost-aware"))
    assert r.trace.quality_target == 0.95 and r.trace.value_usd > 0
    fixed = await router.route(RouteRequest(messages=MSG, policy="cost-aware",
                                            outcome_value_usd=0.0))
    assert fixed.trace.quality_target is None and fixed.trace.value_usd == 0.0
    assert fixed.provider == "mixtral"  # nothing is worth paying for: the cheapest
    own = await router.route(RouteRequest(messages=MSG, policy="cost-aware",
                                          quality_target=0.8))
    assert own.trace.quality_target == 0.8
    assert [x.quality_target for x in sink if isinstance(x, RequestRecord)] == [0.95, None, 0.8]


async def test_relearn_from_records_gives_the_same_estimates():
    router, sink = make(Fake(), router={"seed": 1})
    for i in range(60):
        r = await router.route(RouteRequest(messages=MSG, policy="cost-aware",
                                            context={"task": f"t{i % 3}"}))
        router.feedback(r.request_id, float(i % 4 != 0))
    again, _ = make(Fake(), router={"seed": 1})
    again.relearn(list(sink))
    assert again.learner.table() == router.learner.table()
    assert again.learner.prices_table() == router.learner.prices_table()
    assert again.learner.knows(r.request_id)


def test_removed_settings_fail_with_the_reason():
    from actors.routing.router import RouterSpec

    with pytest.raises(ValueError, match="cost_quality_margin was removed.*quality_target"):
        RouterSpec.model_validate({"cost_quality_margin": 0.1})


async def test_latency_aware_burst_spreads_over_providers_and_outstanding_drains():
    fake = Fake(delay=0.05)
    router, _ = make(fake)
    reqs = [RouteRequest(messages=MSG, policy="latency-aware") for _ in range(200)]
    results = await asyncio.gather(*(router.route(r) for r in reqs))
    used = {r.provider for r in results}
    # With every provider at the same prior p50, the burst's own queue moves it along.
    assert len(used) == len(CFG.providers), used
    assert all(v == 0 for v in router.outstanding.values())
    fake_dead = Fake({"claude": ["dead"]})
    router2, _ = make(fake_dead)
    await router2.route(RouteRequest(messages=MSG, fallbacks=["claude", "gemini"]))
    assert router2.outstanding == {"claude": 0, "gemini": 0}


async def test_active_holds_the_ids_being_routed():
    router, _ = make(Fake(delay=0.05))
    task = asyncio.ensure_future(router.route(RouteRequest(messages=MSG, request_id="r-1")))
    await asyncio.sleep(0.01)
    assert router.active == {"r-1"}
    await task
    assert router.active == set()
    with pytest.raises(RoutingError):
        await router.route(RouteRequest(messages=MSG, request_id="r-2", policy="nope"))
    assert router.active == set()


def test_only_providers_no_reply_refreshed_are_stale():
    """The refresh loop asks only idle providers for snapshots (each ask is a Ray call on
    the router's loop); a reply's snapshot makes its provider fresh."""
    router, _ = make(Fake())
    names = list(router.providers)
    assert router.stale_snapshots(1.0) == names  # nothing heard yet
    busy = router.snapshots[names[0]].model_copy(update={"success_rate": 0.5})
    router.update_snapshot(busy)
    assert router.stale_snapshots(1.0) == names[1:]
    assert router.snapshots[names[0]].success_rate == 0.5
    assert router.stale_snapshots(0.0) == names  # everything is older than no time at all


async def test_a_crossed_soft_limit_reaches_the_warning_hook_typed():
    """The router hands its owner the warning's scope and window as values (the actor
    labels a metric and writes a WarningRecord with them), and the trace says it in words."""
    from actors.core.budget import BudgetWarning

    got: list[BudgetWarning] = []
    cfg = CFG.with_sections(budgets={"hourly_usd": 100.0, "soft_limit": 1e-6})
    router = Router(cfg, Fake(), [].extend, on_warning=got.append)
    r = await router.route(RouteRequest(messages=MSG, provider="claude"))
    assert [(w.scope, w.window) for w in got] == [("global", "hourly")]
    assert r.trace.warnings == [got[0].message] and "global hourly spend" in got[0].message
