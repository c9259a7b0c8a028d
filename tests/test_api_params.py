"""Issue 13's plain cores without Ray: parameter exclusions, n × max_tokens reservations,
audit columns (users, token detail) and costs by user, and a streamed attempt through the
provider's resilience stack against the loopback simulator."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from actors.clients.base import Completion, Message
from actors.config import load_config
from actors.core.cost import worst_case_cost
from actors.core.errors import ErrorClass
from actors.core.params import UnsupportedParameter, exclusions, refuse_if_nobody
from actors.core.records import AttemptRecord
from actors.routing.route import RouteRequest
from actors.rpc.messages import ProviderCall, ProviderReply
from actors.shells.provider import Provider, reserve_tokens
from actors.shells.provider_stream import stream_attempts
from actors.simulator.server import SimulatorProcess, simulator_base_url
from actors.stores.audit import AuditStore
from actors.stores.spend import WindowError, cost_summary

CFG = load_config()
PROVIDERS = {p.name: p for p in CFG.providers}
HI = [Message(role="user", content="hi")]


def test_exclusions_name_each_provider_and_parameter():
    found = exclusions(PROVIDERS, Completion(messages=HI, logprobs=True, top_logprobs=3))
    assert set(found) == {"claude", "gemini", "mixtral"}  # gpt-4-turbo and llama honour it
    assert all(u.param == "logprobs" for us in found.values() for u in us)
    assert exclusions(PROVIDERS, Completion(messages=HI)) == {}


def test_nobody_can_honour_it_is_a_bad_request_naming_the_parameter():
    found = exclusions(PROVIDERS, Completion(messages=HI, seed=3))
    with pytest.raises(UnsupportedParameter) as info:
        refuse_if_nobody(found, ["claude"])  # pinned
    assert info.value.param == "seed" and info.value.error_class is ErrorClass.BAD_REQUEST
    assert "claude" in info.value.message
    refuse_if_nobody(found, PROVIDERS)  # others can: no error


def test_route_request_carries_every_completion_parameter():
    req = RouteRequest(messages=HI, stop="END", seed=4, n=2, user="desk",
                       response_format={"type": "json_object"})
    c = req.completion()
    assert c.stop == ["END"] and c.seed == 4 and c.n == 2 and c.user == "desk"
    assert c.wants_json and req.has_params
    assert not RouteRequest(messages=HI).has_params


def test_n_choices_reserve_n_times_max_tokens():
    c1 = Completion(messages=HI, max_tokens=100)
    c3 = Completion(messages=HI, max_tokens=100, n=3)
    assert reserve_tokens(c3) - reserve_tokens(c1) == 200
    spec = PROVIDERS["gpt-4-turbo"]
    one, three = worst_case_cost(spec, 50, 100), worst_case_cost(spec, 50, 100, 3)
    assert three - one == pytest.approx(2 * 100 * spec.output_cost_per_mtok / 1e6)


def attempt(rid: str, **kw) -> AttemptRecord:
    base = dict(request_id=rid, attempt=1, ts=time.time(), provider="claude", model="m",
                ok=True, cost_usd=0.5, input_tokens=100, output_tokens=10)
    return AttemptRecord(**{**base, **kw})


def test_user_and_token_detail_are_stored_and_costs_group_by_user(tmp_path: Path):
    s = AuditStore(tmp_path / "a.db")
    s.write_batch([attempt("a", user="desk-1", cached_input_tokens=60, cache_write_tokens=5,
                           reasoning_tokens=4, usage_estimated=True),
                   attempt("b", user="desk-1"), attempt("c", user="desk-2", cost_usd=0.25),
                   attempt("d")])
    row = s.attempts_for("a")[0]
    assert row["user"] == "desk-1" and row["cached_input_tokens"] == 60
    assert row["cache_write_tokens"] == 5 and row["reasoning_tokens"] == 4
    assert row["usage_estimated"] is True
    df = cost_summary(s, "day", group_by="user").reset_index()
    by = dict(zip(df["user"].fillna("-"), df["cost_usd"], strict=True))
    assert by == {"desk-1": 1.0, "desk-2": 0.25, "-": 0.5}
    assert cost_summary(s, "day").index.names == ["period", "provider", "model", "simulated"]
    with pytest.raises(WindowError) as info:
        cost_summary(s, "day", group_by="strategy")
    assert info.value.param == "group_by"


def test_an_audit_db_from_before_gains_the_new_columns(tmp_path: Path):
    path = tmp_path / "old.db"
    s = AuditStore(path)
    s.close()
    with sqlite3.connect(path) as db:  # what the previous release wrote
        for col in ("user", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
                    "usage_estimated"):
            db.execute(f"ALTER TABLE attempts DROP COLUMN {col}")
        db.execute("ALTER TABLE requests DROP COLUMN user")
        db.execute("INSERT INTO attempts (request_id, attempt, provider, ts, model, policy, "
                   "context, ok, input_tokens, output_tokens, cost_usd, latency_s) VALUES "
                   "('old', 1, 'claude', 1.0, 'm', '', '{}', 1, 1, 1, 0.1, 0.1)")
    s = AuditStore(path)
    old = s.attempts_for("old")[0]
    assert old["user"] is None and old["cached_input_tokens"] == 0
    assert old["usage_estimated"] is False
    s.write_batch([attempt("new", user="desk-3")])
    assert s.attempts_for("new")[0]["user"] == "desk-3"
    s.close()


# -- a streamed attempt through the resilience stack ----------------------------------------

@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0.0, seed=7) as s:
        yield s


def provider(sim, name: str = "gpt-4-turbo") -> Provider:
    spec = CFG.provider(name)
    return Provider(spec, base_url=simulator_base_url(spec.api, sim.url), simulated=True)


def stream_call(**kw) -> ProviderCall:
    return ProviderCall(request_id="s1", completion=Completion(messages=[
        Message(role="user", content="Regime: bull. Trade signal?")], max_tokens=200), **kw)


async def collect(p: Provider, call: ProviderCall) -> tuple[list, ProviderReply]:
    items = [x async for x in stream_attempts(p, call)]
    assert isinstance(items[-1], ProviderReply)
    return items[:-1], items[-1]


async def test_a_streamed_attempt_relays_events_and_accounts_like_a_plain_one(sim):
    p = provider(sim)
    events, reply = await collect(p, stream_call())
    text = "".join(e.text for e in events if e.type == "text")
    assert reply.result and text == reply.result.text and events[-1].type == "finish"
    a = reply.attempts[0]
    assert a.ok and a.output_tokens == reply.result.output_tokens and a.cost_usd > 0
    assert p.limiter.inflight == 0 and p.snapshot().samples == 1  # lease back, window fed
    await p.aclose()


async def test_a_failure_before_the_first_token_is_retried_then_reported(sim):
    sim.set_profile("gpt-4-turbo", down=True)
    try:
        p = provider(sim)
        events, reply = await collect(p, stream_call())
    finally:
        sim.reset_profile("gpt-4-turbo")
    assert not events and reply.result is None and reply.error_class == "overloaded"
    assert len(reply.attempts) == CFG.provider("gpt-4-turbo").retry.max_attempts
    await p.aclose()


async def test_a_stream_cut_midway_is_billed_and_not_retried(sim):
    sim.set_profile("gpt-4-turbo", cut=1.0)
    try:
        p = provider(sim)
        events, reply = await collect(p, stream_call())
    finally:
        sim.reset_profile("gpt-4-turbo")
    assert events and reply.result is None and reply.error_class == "connection"
    assert len(reply.attempts) == 1  # tokens went out: no retry
    a = reply.attempts[0]
    assert a.cost_usd > 0 and a.output_tokens > 0 and a.usage_estimated
    assert p.limiter.inflight == 0
    await p.aclose()


@pytest.fixture(scope="module")
def slow_sim():
    with SimulatorProcess(latency_scale=1.0, seed=7) as s:
        yield s


async def test_a_caller_that_goes_away_closes_the_provider_stream_and_keeps_the_bill(slow_sim):
    from tests.waiting import wait_until

    sim = slow_sim
    sim.set_profile("gpt-4-turbo", base_ms=10, jitter=0, ms_per_token=0, stream_chunks=20,
                    stream_interval_ms=200)
    abandoned: list[ProviderReply] = []
    try:
        p = provider(sim)
        gen = stream_attempts(p, stream_call(user="desk-9"), abandoned.append)
        first = await anext(gen)
        assert first.type == "text"
        await gen.aclose()
    finally:
        sim.reset_profile("gpt-4-turbo")
    assert len(abandoned) == 1
    a = abandoned[0].attempts[0]
    assert a.error_class == "cancelled" and a.cost_usd > 0 and a.usage_estimated
    assert p.limiter.inflight == 0 and p.breaker.state(time.time()).value == "closed"
    await p.aclose()  # let the loop run the socket's close before waiting (blocking) on it
    wait_until(lambda: sim.stats().models["gpt-4-turbo"].streams_cancelled == 1, timeout=10)


async def test_an_answer_that_spent_the_cap_thinking_is_output_limit_billed_not_a_fault(sim):
    """Gemini 2.5 counts thinking against maxOutputTokens: a small cap can come back empty
    (MAX_TOKENS) yet billed. That is the caller's cap, not the provider's health."""
    sim.set_profile("gemini-2.5-pro", thinking_tokens=400)
    try:
        p = provider(sim, "gemini")
        reply = await p.complete(ProviderCall(request_id="t1", completion=Completion(
            messages=[Message(role="user", content="SPY?")], max_tokens=64,
            thinking_budget=-1)))
    finally:
        sim.reset_profile("gemini-2.5-pro")
    assert reply.result is None and reply.error_class == "output_limit"
    a = reply.attempts[0]
    assert a.cost_usd > 0 and a.output_tokens > 0  # billed and recorded
    assert len(reply.attempts) == 1  # not retried
    assert p.snapshot().samples == 0 and p.breaker.state(time.time()).value == "closed"
    await p.aclose()
