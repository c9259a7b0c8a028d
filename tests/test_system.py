"""The actor system end to end on one local Ray instance, against the loopback simulator:
notebook API, tracker, budgets, breakers, rate limits, kills and key hygiene."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from actors.api import RouterClient, connect
from actors.routing.route import RoutingError
from tests.conftest import SECRET, make_config, restart_router, sim, sim_reset
from tests.waiting import async_wait_until, wait_until

LLAMA = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
BUDGET = {"per_provider": {"gpt-4-turbo": {"hourly_usd": 0.05}}}


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory) -> RouterClient:
    cfg = make_config(tmp_path_factory.mktemp("system"), budgets=BUDGET)
    cfg["providers"][3].update(rpm=600)  # mixtral: a limit the rate-limit test can reach
    client = connect(config=cfg)
    yield client
    client.shutdown(stop_ray=False)


def test_complete_returns_text_usage_cost_and_trace(llm):
    r = llm.complete("Bull market, RSI 60. Trade signal?", policy="cost-aware",
                     context={"task": "analysis", "regime": "bull", "timeframe": "1h"},
                     output="trade_signal", max_tokens=300)
    assert r.text and r.input_tokens > 0 and r.output_tokens > 0 and r.cost_usd > 0
    assert r.parsed and r.parsed.direction in ("long", "short", "flat")  # a TradeSignal
    t = r.trace
    assert t.policy == "cost-aware" and t.chosen == r.provider and t.request_id == r.request_id
    assert {c["provider"] for c in t.candidates} == set(llm.config.names)
    assert t.attempts[-1].ok and t.cost_usd == pytest.approx(r.cost_usd)
    rows = llm.audit(r.request_id)
    assert rows[-1]["ok"] and rows[0]["provider"] == r.provider
    assert rows[0]["prompt"] and "RSI 60" in rows[0]["prompt"]
    assert rows[0]["context"] and "bull" in str(rows[0]["context"])


def test_pin_fallbacks_and_async_twin(llm):
    r = llm.complete("hi", provider="llama")
    assert r.provider == "llama"

    async def many():
        return await asyncio.gather(*(llm.acomplete("hi", fallbacks=["mixtral", "llama"])
                                      for _ in range(8)))

    out = asyncio.run(many())
    assert all(x.provider == "mixtral" for x in out)
    # On one node, router → provider calls take the local socket, not Ray calls.
    counts = ray.get(llm.handles.router.channel_counts.remote())["mixtral"]
    assert counts["socket"] == counts["calls"] >= 8 and counts["submits"] == 0
    assert llm.active(["never-sent", out[0].request_id]) == set()  # nothing being routed


def test_reports_status_costs_performance_feedback(llm):
    r = llm.complete("hi", provider="gemini")
    st = llm.status()
    assert set(st.index) == set(llm.config.names)
    assert st.loc["gemini", "state"] == "closed" and bool(st.loc["gemini", "simulated"])
    assert llm.flush() == 0  # reports read the trail as it is: see the latest first
    hourly = llm.costs("hour")
    assert hourly["cost_usd"].sum() > 0 and "gemini" in hourly.index.get_level_values("provider")
    assert not llm.costs("day").empty
    cpt = llm.cost_per_token()
    assert not cpt.empty and (cpt.select_dtypes("number").fillna(0) >= 0).all().all()
    perf = llm.performance()
    assert "gemini" in perf.index.get_level_values(0)
    llm.feedback(r.request_id, 1.0)
    assert llm.audit(r.request_id)[-1]["score"] == 1.0
    with pytest.raises(KeyError, match="unknown request id"):
        llm.feedback("no-such-request", 1.0)
    with pytest.raises(ValueError, match="unknown period .week.; choose one of hour, day"):
        llm.costs("week")


def test_unknown_names_are_clear_errors(llm):
    with pytest.raises(RoutingError, match="unknown provider 'gpt-5'"):
        llm.complete("hi", provider="gpt-5")
    with pytest.raises(RoutingError, match="unknown policy"):
        llm.complete("hi", policy="cheapest")
    with pytest.raises(ValueError, match="unknown provider"):
        llm.reset("gpt-5")


def test_budget_holds_under_64_concurrent_requests(llm):
    async def burst():
        return await asyncio.gather(
            *(llm.acomplete("Budget test " * 20, provider="gpt-4-turbo", max_tokens=200)
              for _ in range(64)), return_exceptions=True)

    out = asyncio.run(burst())
    ok = [o for o in out if not isinstance(o, BaseException)]
    refused = [o for o in out if isinstance(o, RoutingError)]
    assert ok and refused and len(ok) + len(refused) == 64
    assert all(e.error_class.value == "budget_exceeded" for e in refused)
    assert "gpt-4-turbo" in refused[0].message and "hourly budget" in refused[0].message
    llm.flush()
    spend = llm.costs("hour").xs("gpt-4-turbo", level="provider")["cost_usd"].sum()
    assert 0 < spend <= 0.05
    budgets = llm.budgets()
    row = budgets[(budgets.scope == "gpt-4-turbo") & (budgets.window == "hourly")].iloc[0]
    assert row.spent_usd <= 0.05


def test_rate_limits_wait_instead_of_causing_429(llm):
    sim(llm, "open-mixtral-8x7b", rpm=600, base_ms=0)
    stats0 = ray.get(llm.simulator.stats.remote())["models"].get("open-mixtral-8x7b", {})

    async def burst():
        return await asyncio.gather(*(llm.acomplete("hi", provider="mixtral", timeout=30)
                                      for _ in range(40)))

    try:
        out = asyncio.run(burst())
        assert len(out) == 40 and all(o.provider == "mixtral" for o in out)
        stats = ray.get(llm.simulator.stats.remote())["models"]["open-mixtral-8x7b"]
        assert stats["rate_limited_by_limit"] == stats0.get("rate_limited_by_limit", 0) == 0
    finally:
        sim_reset(llm, "open-mixtral-8x7b")


def test_429s_retry_after_then_breaker_opens_half_opens_closes(llm):
    sim(llm, "gemini-2.5-pro", rate_limit=1.0, retry_after_s=0.3)
    try:
        with pytest.raises(RoutingError) as info:
            llm.complete("hi", provider="gemini", timeout=10)
        atts = [a for a in info.value.trace.attempts if a.provider == "gemini"]
        assert [a.error_class for a in atts] == ["rate_limited", "rate_limited"]
        rows = [r for r in llm.audit(info.value.trace.request_id) if r.get("attempt")]
        assert rows[1]["ts"] - rows[0]["ts"] >= 0.3 - 0.05  # waited for Retry-After
        for _ in range(3):  # consecutive failures (3) open it
            try:
                llm.complete("hi", provider="gemini", timeout=10)
            except RoutingError:
                pass
        assert llm.status().loc["gemini", "state"] == "open"
        with pytest.raises(RoutingError, match="breaker_open"):
            llm.complete("hi", provider="gemini")
    finally:
        sim_reset(llm, "gemini-2.5-pro")

    def answers() -> bool:  # open_s = 1 (or Retry-After) → half-open → a probe succeeds
        try:
            return llm.complete("hi", provider="gemini", timeout=10).provider == "gemini"
        except RoutingError as exc:
            assert "breaker_open" in str(exc), exc  # refused while open, never sent
            return False

    wait_until(answers, 10, every=0.2, what="gemini's breaker half-open and probed")
    for _ in range(2):
        r = llm.complete("hi", provider="gemini", timeout=10)
    assert r.provider == "gemini" and llm.status().loc["gemini", "state"] == "closed"


def test_manual_reset_closes_an_open_breaker(llm):
    sim(llm, "claude-sonnet-4-5", server_error=1.0)
    try:
        for _ in range(2):  # 2 requests × 2 attempts ≥ 3 consecutive failures
            with pytest.raises(RoutingError):
                llm.complete("hi", provider="claude", timeout=10)
        assert llm.status().loc["claude", "state"] == "open"
    finally:
        sim_reset(llm, "claude-sonnet-4-5")
    snap = llm.reset("claude")
    assert snap["state"] == "closed"
    assert llm.complete("hi", provider="claude").provider == "claude"


def _pid(handle) -> int:
    return ray.get(handle.__ray_call__.remote(lambda self: __import__("os").getpid()), timeout=30)


def _routing(llm) -> int:
    """Requests the router is routing right now."""
    return ray.get(llm.handles.router.inflight.remote(), timeout=30)


def test_killed_provider_actor_mid_load(llm):
    """All 30 requests are at llama (slowed to ~1 s) when it is killed: each falls back."""
    old = _pid(llm.provider("llama"))
    sim(llm, LLAMA, base_ms=50_000, jitter=0)  # × latency_scale 0.02 = 1 s

    async def both():
        calls = [asyncio.ensure_future(llm.acomplete("hi", fallbacks=["llama", "mixtral"],
                                                     timeout=30)) for _ in range(30)]
        await async_wait_until(lambda: not any(c.done() for c in calls) and _routing(llm) >= 30,
                               20, every=0.05, what="30 requests in flight at llama")
        ray.kill(llm.provider("llama"), no_restart=False)
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        out = asyncio.run(both())
    finally:
        sim_reset(llm, LLAMA)
    for o in out:  # a result or a classified error — never a bare crash
        assert not isinstance(o, BaseException) or isinstance(o, RoutingError), repr(o)
    assert sum(not isinstance(o, BaseException) for o in out) >= 25
    lost = [a for o in out if not isinstance(o, BaseException) for a in o.trace.attempts
            if a.provider == "llama" and "provider actor unavailable" in (a.error or "")]
    assert lost, "the kill landed on no call in flight"  # all 30 were sent before it

    def llama_ready() -> str | None:
        try:
            return ray.get(llm.provider("llama").ready.remote(), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, ValueError):
            return None  # restarting (ValueError: its name not registered again yet)

    assert wait_until(llama_ready, 30, every=0.5, what="the killed provider back") == "llama"
    assert _pid(llm.provider("llama")) != old  # a new process: the kill landed
    assert llm.complete("hi", provider="llama", timeout=30).provider == "llama"


def test_killed_tracker_loses_no_acknowledged_record(llm):
    """The tracker is killed with some of 40 requests answered (their records on the way)
    and the rest still in flight."""
    ids: list[str] = []
    old = _pid(llm.handles.tracker)
    sim(llm, "open-mixtral-8x7b", base_ms=10_000, jitter=0.5)  # ~0.2 s each

    async def both():
        calls = [asyncio.ensure_future(llm.acomplete("hi", provider="mixtral", timeout=30))
                 for _ in range(40)]
        await async_wait_until(lambda: 0 < sum(c.done() for c in calls), 20,
                               what="the first answers")
        ray.kill(llm.handles.tracker, no_restart=False)
        undone = sum(not c.done() for c in calls)
        out = await asyncio.gather(*calls, return_exceptions=True)
        ids.extend(o.request_id for o in out if not isinstance(o, BaseException))
        return undone

    try:
        undone = asyncio.run(both())
    finally:
        sim_reset(llm, "open-mixtral-8x7b")
    assert undone > 0  # the kill landed mid-load
    assert len(ids) == 40
    for rid in ids:  # the router re-sends what the dead tracker never acknowledged
        rows = llm.audit(rid)
        assert sum(1 for r in rows if r.get("attempts") is not None and "score" not in r) >= 1
    counts = ray.get(llm.handles.tracker.reconcile.remote())
    assert _pid(llm.handles.tracker) != old  # a new tracker process answered
    llm.flush()
    hourly = llm.costs("hour")["cost_usd"].sum()
    frame_total = sum(r["cost_usd"] for rid in ids for r in llm.audit(rid)[:-1])
    assert counts["requests"] >= 40 and hourly >= frame_total > 0


def test_api_keys_never_leak(llm):
    r = llm.complete("hi", provider="claude")  # claude's key is SECRET in every worker
    assert r.provider == "claude"
    everything = repr(r) + str(llm.audit(r.request_id)) + repr(llm.status().to_dict())
    everything += repr(llm.handles) + repr(ray.get(llm.provider("claude").status.remote()))
    sim(llm, "claude-sonnet-4-5", server_error=1.0)
    try:
        with pytest.raises(RoutingError) as info:
            llm.complete("hi", provider="claude")
        everything += str(info.value) + repr(info.value.trace)
    finally:
        sim_reset(llm, "claude-sonnet-4-5")
    assert SECRET not in everything
    # This session's own logs (not whatever /tmp/ray/session_latest points at: another
    # cluster on the machine, or none), and there must be some, or nothing was checked.
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert any(p.name.startswith(("worker-", "python-core-worker-")) for p in files), logs
    for path in files:
        assert SECRET not in path.read_text(errors="ignore"), path


def test_ohlcv_to_validated_signal_and_risk_in_one_call(llm):
    from prompts import RiskAssessment, TradeSignal, load_sample

    bars = load_sample("sp500").iloc[-400:]
    r = llm.analyze(bars, "analysis", symbol="SPX", timeframe="1d", policy="accuracy-first")
    sig = TradeSignal.model_validate(r.parsed)
    assert sig.direction in ("long", "short", "flat") and 0 <= sig.confidence <= 1
    assert r.trace.context["task"] == "analysis" and r.trace.context["regime"]
    risk = llm.analyze(bars, "risk", symbol="SPX", timeframe="1d",
                       position={"entry": 2500.0, "stop": 2450.0, "size": 10, "account_equity": 1e5})
    assert RiskAssessment.model_validate(risk.parsed).risk_score >= 0
    with pytest.raises(ValueError, match="symbol= and timeframe="):
        llm.analyze(bars)


def test_invalid_output_counts_against_provider_and_falls_back(llm):
    from prompts import load_sample

    bars = load_sample("sp500").iloc[-300:]
    sim(llm, "claude-sonnet-4-5", invalid_output=1.0)
    try:
        r = llm.analyze(bars, symbol="SPX", timeframe="1d", fallbacks=["claude", "llama"])
    finally:
        sim_reset(llm, "claude-sonnet-4-5")
    assert r.provider == "llama"
    first = r.trace.attempts[0]
    assert (first.provider, first.error_class) == ("claude", "invalid_response")
    rows = llm.audit(r.request_id)
    assert rows[0]["error_class"] == "invalid_response"
    assert rows[0]["response"] and rows[0]["cost_usd"] > 0  # billed, and kept for debugging
    assert r.cost_usd > rows[1]["cost_usd"]  # the request's cost includes the wasted attempt


def test_killed_router_loses_no_answered_request(llm):
    """Answers the router gave before it died keep their audit rows (journal replay);
    requests caught in flight fail with a classified error, and the router comes back."""
    answered: list[str] = []
    ids = [f"kill-router-{i}" for i in range(200)]

    async def both():
        calls = [asyncio.ensure_future(llm.acomplete("hi", provider="llama", timeout=30,
                                                     request_id=rid)) for rid in ids]
        await async_wait_until(lambda: 0 < sum(c.done() for c in calls), 20,
                               what="the first answers")
        ray.kill(llm.handles.router, no_restart=False)
        out = await asyncio.gather(*calls, return_exceptions=True)
        answered.extend(o.request_id for o in out if not isinstance(o, BaseException))
        return out

    sim(llm, LLAMA, base_ms=10_000, jitter=0.5)  # ~0.2 s each: the load outlasts the kill
    try:
        out = asyncio.run(both())
    finally:
        sim_reset(llm, LLAMA)
    for o in out:
        assert not isinstance(o, BaseException) or isinstance(o, RoutingError), repr(o)
    assert 0 < len(answered) < len(ids)  # the kill landed with requests in flight

    def answers() -> bool:  # the restarted router answers again
        try:
            return llm.complete("hi", provider="llama", timeout=10).provider == "llama"
        except RoutingError:  # still restarting: a lost router's classified error
            return False

    wait_until(answers, 60, every=0.5, what="the restarted router answering")
    for rid in answered:
        rows = llm.audit(rid)
        assert any(r.get("attempts") is not None for r in rows), rid
    for rid in ids:  # every request, answered or not, has exactly one terminal row
        terminal = [r for r in llm.audit(rid) if r.get("attempts") is not None]
        assert len(terminal) == 1, rid
    print(f"answered {len(answered)} of 200 around the kill")


def test_attempts_in_flight_when_the_router_dies_are_still_recorded(llm):
    """The provider finishes (and is billed for) calls whose router died meanwhile; it
    records those attempts with the tracker itself, so spend and budgets still see them."""
    from actors.shells.provider import ORPHAN_POLICY

    sim(llm, "open-mixtral-8x7b", base_ms=150_000, jitter=0)  # × latency_scale 0.02 = 3 s
    ids = [f"orphan-{i}" for i in range(6)]

    def hourly_spent() -> float:
        """From the restarted router, as soon as it answers."""
        def spent() -> list[float]:  # a list: a spend of 0.0 is an answer too
            try:
                b = llm.budgets()
            except ray.exceptions.RayActorError:  # still restarting
                return []
            return [float(b[(b.scope == "*") & (b.window == "hourly")].iloc[0].spent_usd)]

        return wait_until(spent, 60, every=0.1, what="the restarted router's budgets")[0]

    async def go():
        calls = [asyncio.ensure_future(llm.acomplete("hi", provider="mixtral", timeout=30,
                                                     request_id=rid)) for rid in ids]
        await async_wait_until(lambda: _routing(llm) == 6, 20,
                               what="all six waiting on the simulator")
        ray.kill(llm.handles.router, no_restart=False)
        out = await asyncio.gather(*calls, return_exceptions=True)
        # the restarted router, before the six calls have finished at the provider
        return out, await asyncio.to_thread(hourly_spent)

    try:
        out, booked_at_restart = asyncio.run(go())
    finally:
        sim_reset(llm, "open-mixtral-8x7b")
    assert all(isinstance(o, RoutingError) for o in out), out
    rows: dict = {}
    orphans: dict = {}

    def recorded() -> bool:
        try:
            rows.update({rid: llm.audit(rid) for rid in ids})  # also waits for the new router
        except ray.exceptions.RayActorError:  # still restarting
            return False
        orphans.update({rid: [r for r in rs if r.get("policy") == ORPHAN_POLICY]
                        for rid, rs in rows.items()})
        return all(len(v) == 1 for v in orphans.values())

    wait_until(recorded, 60, every=0.5, what=lambda: f"orphaned attempts recorded: {orphans} "
               f"{[rows.get(i) for i in ids if not orphans.get(i)]}")
    for rid in ids:
        (att,) = orphans[rid]
        assert att["ok"] and att["cost_usd"] > 0 and att["provider"] == "mixtral"
        terminal = [r for r in rows[rid] if r.get("attempts") is not None]
        assert len(terminal) == 1 and terminal[0]["error_class"] == "unknown_outcome"
    # The restarted router booked its predecessor's calls in flight (at their reservation)
    # before they reached the trail: the orphans' spend cannot push past a budget.
    recorded = llm.costs("hour", since=(time.time() // 3600) * 3600)["cost_usd"].sum()
    assert booked_at_restart >= recorded - 1e-9


def test_budget_change_at_run_time_survives_a_router_restart(llm):
    before = llm.budgets()
    spent = before[(before.scope == "*") & (before.window == "daily")].iloc[0].spent_usd
    status = llm.set_budgets({**BUDGET, "daily_usd": spent + 1e-6})
    assert status[(status.scope == "*") & (status.window == "daily")].iloc[0].limit_usd > 0
    with pytest.raises(RoutingError) as info:
        llm.complete("hi", provider="llama", max_tokens=100)
    assert info.value.error_class.value == "budget_exceeded"
    with pytest.raises(Exception, match="daily_usd"):
        llm.set_budgets({"daily_usd": -5})
    try:
        restart_router(llm)
        b = llm.budgets().set_index(["scope", "window"])
        assert b.loc[("*", "daily"), "limit_usd"] == pytest.approx(spent + 1e-6)
        assert "run-time override set" in b.loc[("*", "daily"), "source"]
    finally:
        llm.set_budgets({"daily_usd": None})  # changes merge: null removes the daily cap
    b = llm.budgets().set_index(["scope", "window"])
    assert b.loc[("*", "daily"), "limit_usd"] is None or pd.isna(b.loc[("*", "daily"), "limit_usd"])
    assert b.loc[("gpt-4-turbo", "hourly"), "limit_usd"] == 0.05  # the config's cap stayed
    assert llm.complete("hi", provider="llama").provider == "llama"
