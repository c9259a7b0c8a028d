"""The response cache without Ray: its key, its store, and the router's use of it (a hit
calls no provider, reserves no budget, is recorded as a hit with the saved cost)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from actors.clients.base import Completion, Message
from actors.config import load_config
from actors.core.records import AttemptRecord, RequestRecord
from actors.routing.route import RouteRequest, RoutingError
from actors.routing.router import Router
from actors.stores.audit import AuditStore
from actors.stores.response_cache import (
    CachedAnswer,
    CacheSpec,
    ResponseCache,
    answer_key,
    choice_key,
)
from tests.test_router_core import MSG, Fake

CFG = load_config()
KEY = b"k" * 32
BASE = Completion(messages=[Message(role="user", content="Is SPY bullish?")])
TOOLS = [{"type": "function", "function": {"name": "quote", "parameters": {
    "type": "object", "properties": {}}}}]
#: A non-default value for every Completion field (a new field fails the test until added),
#: with what it needs alongside.
VARIANTS = {
    "messages": {"messages": [Message(role="user", content="Is QQQ bullish?")]},
    "max_tokens": {"max_tokens": 77}, "temperature": {"temperature": 0.3},
    "top_p": {"top_p": 0.5}, "stop": {"stop": ["END"]}, "seed": {"seed": 7},
    "presence_penalty": {"presence_penalty": 0.1},
    "frequency_penalty": {"frequency_penalty": 0.2}, "user": {"user": "desk-1"},
    "logprobs": {"logprobs": True}, "top_logprobs": {"logprobs": True, "top_logprobs": 3},
    "n": {"n": 2}, "thinking_budget": {"thinking_budget": 0}, "tools": {"tools": TOOLS},
    "tool_choice": {"tools": TOOLS, "tool_choice": "required"},
    "parallel_tool_calls": {"tools": TOOLS, "parallel_tool_calls": False},
    "response_format": {"response_format": {"type": "json_object"}},
}


def test_every_parameter_that_shapes_an_answer_changes_the_key():
    spec = CFG.provider("claude")
    base = answer_key(KEY, spec, False, BASE, "text")
    assert set(VARIANTS) == set(Completion.model_fields), "a new Completion field: add it here"
    seen = {base}
    for name, update in VARIANTS.items():
        req = Completion.model_validate({**BASE.model_dump(exclude_none=True), **update})
        k = answer_key(KEY, spec, False, req, "text")
        assert k not in seen, name
        seen.add(k)
    # the provider, its model and endpoint, simulated or not, the output kind, the HMAC key
    others = [answer_key(KEY, CFG.provider("gemini"), False, BASE, "text"),
              answer_key(KEY, spec.model_copy(update={"model": "other"}), False, BASE, "text"),
              answer_key(KEY, spec.model_copy(update={"base_url": "http://x"}), False, BASE,
                         "text"),
              answer_key(KEY, spec, True, BASE, "text"),
              answer_key(KEY, spec, False, BASE, "signal"),
              answer_key(b"other", spec, False, BASE, "text")]
    assert len(set(others) | {base}) == len(others) + 1
    # operational settings do not (a rate limit does not change an answer)
    assert answer_key(KEY, spec.model_copy(update={"rpm": 1}), False, BASE, "text") == base


def test_choice_key_ignores_the_run_id_but_not_the_policy_or_context():
    a = choice_key(KEY, "cost-aware", {"task": "analysis", "backtest": "r1"}, BASE, "signal")
    assert a == choice_key(KEY, "cost-aware", {"backtest": "r2", "task": "analysis"}, BASE,
                           "signal")
    assert a != choice_key(KEY, "accuracy-first", {"task": "analysis"}, BASE, "signal")
    assert a != choice_key(KEY, "cost-aware", {"task": "risk"}, BASE, "signal")


def _answer(**kw) -> CachedAnswer:
    return CachedAnswer(**{"provider": "claude", "model": "m", "text": "hi",
                           "finish_reason": "stop", "cost_usd": 0.01, **kw})


def test_store_is_durable_with_a_ttl_and_a_size_bound(tmp_path):
    now = [1000.0]
    path = tmp_path / "c.sqlite3"
    c = ResponseCache(CacheSpec(ttl_s=100, max_entries=3), path, clock=lambda: now[0])
    for i in range(5):
        c.put(f"k{i}", f"c{i}", _answer(text=str(i), ts=now[0] + i))
    assert c.get("k4").text == "4" and c.chosen("c4") == "k4"
    c.trim()
    assert c.count() == 3 and c.get("k0") is None and c.get("k2").text == "2"
    c.close()
    key = c.key
    c = ResponseCache(CacheSpec(ttl_s=100, max_entries=3), path, clock=lambda: now[0])
    assert c.get("k3").text == "3" and c.chosen("c3") == "k3"  # a restart keeps them
    assert c.key == key and len(key) == 32  # the file's own key: another instance, same keys
    other = ResponseCache(CacheSpec(), tmp_path / "other.sqlite3")
    assert other.key != key
    other.close()
    now[0] += 200
    assert c.get("k3") is None and c.chosen("c3") is None  # past the TTL: a miss
    c.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def make(fake: Fake, cache: ResponseCache | None, **cfg) -> tuple[Router, list]:
    sink: list = []
    router = Router(CFG.with_sections(**cfg), fake, sink.extend)
    router.cache = cache
    return router, sink


@pytest.fixture
def cache(tmp_path):
    c = ResponseCache(CacheSpec(), tmp_path / "cache.sqlite3", key=KEY)
    yield c
    c.close()


async def test_a_hit_calls_no_provider_is_not_billed_and_is_recorded_as_a_hit(cache):
    fake = Fake()
    router, sink = make(fake, cache)
    first = await router.route(RouteRequest(messages=MSG, cache="both", output="trade_signal"))
    assert len(fake.calls) == 1 and first.cost_usd == 0.001 and not first.cached
    await cache.flush()
    sink.clear()
    second = await router.route(RouteRequest(messages=MSG, cache="both", output="trade_signal"))
    assert len(fake.calls) == 1  # no provider called
    assert second.cached and second.cost_usd == 0.0 and second.trace.saved_usd == 0.001
    assert second.text == first.text and second.parsed == first.parsed
    assert second.provider == first.provider and not second.trace.attempts
    reqs = [r for r in sink if isinstance(r, RequestRecord)]
    assert len(reqs) == 1 and reqs[0].cached and reqs[0].cost_usd == 0.0
    assert reqs[0].saved_usd == 0.001 and reqs[0].attempts == 0
    assert not any(isinstance(r, AttemptRecord) for r in sink)  # no attempt, no rate use
    assert cache.hits == 1


async def test_live_requests_do_not_use_the_cache_unless_asked(cache):
    fake = Fake()
    router, _ = make(fake, cache)
    await router.route(RouteRequest(messages=MSG))
    await router.route(RouteRequest(messages=MSG))
    assert len(fake.calls) == 2 and cache.count() == 0
    await router.route(RouteRequest(messages=MSG, cache="write"))
    await cache.flush()
    await router.route(RouteRequest(messages=MSG, cache="write"))  # writes, never reads
    assert len(fake.calls) == 4
    r = await router.route(RouteRequest(messages=MSG, cache="read"))
    assert r.cached and len(fake.calls) == 4


async def test_a_hit_reserves_no_budget(cache):
    from actors.core.budget import BudgetLedger, BudgetSpec

    fake = Fake()
    router, _ = make(fake, cache)
    await router.route(RouteRequest(messages=MSG, cache="both", policy="cost-aware"))
    await cache.flush()
    router.ledger = BudgetLedger(BudgetSpec(daily_usd=1e-9))  # no room for any paid answer
    router._budgeted = True
    for _ in range(3):
        r = await router.route(RouteRequest(messages=MSG, cache="both", policy="cost-aware"))
        assert r.cached
    assert len(fake.calls) == 1
    now = time.time()
    assert all(r["spent_usd"] == 0 and r["reserved_usd"] == 0 for r in router.ledger.status(now))
    with pytest.raises(RoutingError) as info:  # a new question still meets the budget
        await router.route(RouteRequest(messages=[Message(role="user", content="other")],
                                        cache="both", policy="cost-aware"))
    assert info.value.error_class.value == "budget_exceeded"


async def test_cache_only_never_calls_a_provider(cache):
    fake = Fake()
    router, sink = make(fake, cache)
    with pytest.raises(RoutingError) as info:
        await router.route(RouteRequest(messages=MSG, cache="only"))
    assert info.value.error_class.value == "cache_miss" and not fake.calls
    off, _ = make(fake, None)
    with pytest.raises(RoutingError) as info:
        await off.route(RouteRequest(messages=MSG, cache="only"))
    assert info.value.error_class.value == "cache_miss" and not fake.calls


async def test_three_policies_pay_each_distinct_provider_and_prompt_once(cache):
    fake = Fake()
    router, sink = make(fake, cache)
    policies = ["accuracy-first", "cost-aware", "latency-aware"]
    prompts = [[Message(role="user", content=f"bar {i}")] for i in range(6)]
    chosen = set()
    for p in prompts:
        for pol in policies:
            r = await router.route(RouteRequest(messages=p, policy=pol, cache="both",
                                                explore=False))
            chosen.add((r.provider, p[0].content))
            await cache.flush()
    assert len(fake.calls) == len(chosen)  # each (provider, prompt) paid once
    # a re-run of the same bars (the run id in the context differs) pays nothing, whatever
    # the learning policies would choose now
    for p in prompts:
        for pol in policies:
            r = await router.route(RouteRequest(messages=p, policy=pol, cache="both",
                                                context={"backtest": "again"}))
            assert r.cached
    assert len(fake.calls) == len(chosen)


async def test_a_simulated_answer_is_never_served_for_a_real_provider(tmp_path, cache):
    fake = Fake()
    router, _ = make(fake, cache)
    router.snapshots = {n: s.model_copy(update={"simulated": True})
                        for n, s in router.snapshots.items()}
    await router.route(RouteRequest(messages=MSG, cache="both", provider="claude"))
    await cache.flush()
    real, _ = make(fake, cache)
    r = await real.route(RouteRequest(messages=MSG, cache="both", provider="claude"))
    assert not r.cached and len(fake.calls) == 2
    await cache.flush()


def test_audit_keeps_hits_and_savings_and_migrates_an_old_file(tmp_path):
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, "
                 "policy TEXT NOT NULL, context TEXT NOT NULL, provider TEXT, model TEXT, "
                 "ok INTEGER NOT NULL, error_class TEXT, error TEXT, attempts INTEGER NOT NULL, "
                 "input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, "
                 "cost_usd REAL NOT NULL, latency_s REAL NOT NULL, confidence REAL)")
    conn.commit()
    conn.close()
    store = AuditStore(db)
    store.write_batch([RequestRecord(request_id="r1", ts=1.0, ok=True, attempts=0,
                                     provider="claude", cached=True, saved_usd=0.02)])
    row = store.request("r1")
    assert row["cached"] is True and row["saved_usd"] == 0.02 and row["cost_usd"] == 0.0
    store.close()


def test_cost_summary_shows_hits_and_savings(tmp_path):
    from actors.stores.spend import cost_summary

    store = AuditStore(tmp_path / "a.sqlite3")
    now = time.time()
    store.write_batch([
        AttemptRecord(request_id="paid", attempt=1, ts=now, provider="claude", model="m",
                      ok=True, cost_usd=0.02),
        RequestRecord(request_id="paid", ts=now, ok=True, attempts=1, provider="claude",
                      model="m", cost_usd=0.02),
        RequestRecord(request_id="hit1", ts=now, ok=True, attempts=0, provider="claude",
                      model="m", cached=True, saved_usd=0.02),
        RequestRecord(request_id="hit2", ts=now, ok=True, attempts=0, provider="gemini",
                      model="g", cached=True, saved_usd=0.01)])
    df = cost_summary(store, "day", now=now).reset_index().set_index("provider")
    assert df.loc["claude", "requests"] == 1 and df.loc["claude", "cost_usd"] == 0.02
    assert df.loc["claude", "cache_hits"] == 1 and df.loc["claude", "saved_usd"] == 0.02
    assert df.loc["gemini", "requests"] == 0 and df.loc["gemini", "cost_usd"] == 0
    assert df.loc["gemini", "cache_hits"] == 1
    store.close()


async def test_the_same_question_in_flight_is_paid_once(cache):
    fake = Fake(delay=0.05)
    router, _ = make(fake, cache)
    rs = await asyncio.gather(*(router.route(RouteRequest(messages=MSG, policy=p, cache="both",
                                                          provider="claude"))
                                for p in ["accuracy-first", "cost-aware", "latency-aware"]))
    assert len(fake.calls) == 1 and sum(r.cached for r in rs) == 2
    assert {r.text for r in rs} == {rs[0].text}
    await cache.flush()


def test_http_header_and_errors_for_the_cache():
    from serve import cache_option, native
    from serve.errors import ApiError, from_routing_error

    req = RouteRequest(messages=MSG)
    assert cache_option.apply(req, None).cache == "off"
    assert cache_option.apply(req, " Both ").cache == "both"
    assert cache_option.apply(req.model_copy(update={"cache": "read"}), "write").cache == "read"
    with pytest.raises(ApiError) as info:
        cache_option.apply(req, "sometimes")
    assert info.value.status == 400 and "x-router-cache" in info.value.message
    from actors.routing.route import RoutingTrace

    err = from_routing_error(RoutingError("cache_miss", "no cached answer",
                                          RoutingTrace(request_id="r", policy="p")))
    assert err.status == 404 and err.type == "cache_miss"
    from actors.routing.route import RouteResult

    hit = RouteResult(request_id="r", provider="claude", model="m", text="{}",
                      finish_reason="stop", input_tokens=0, output_tokens=0, cost_usd=0.0,
                      latency_s=0.0, trace=RoutingTrace(request_id="r", policy="p",
                                                        cached=True, saved_usd=0.25))
    headers = native.trace_headers(hit)
    assert headers["x-router-cache"] == "hit" and float(headers["x-router-saved-usd"]) == 0.25
    assert "x-router-cache" not in native.trace_headers(
        hit.model_copy(update={"trace": RoutingTrace(request_id="r", policy="p")}))
    body = native.AnalyzeRequest.model_validate({"cache": "only", "context": _ctx()})
    assert native.route_request(body, "analysis", CFG, 10.0).cache == "only"
    plain = native.AnalyzeRequest.model_validate({"context": _ctx()})
    assert native.route_request(plain, "analysis", CFG, 10.0).cache == "off"


def _ctx():
    from actors.routing.analysis import context_from_bars
    from prompts import load_sample
    from prompts.regime import RegimeRules

    return context_from_bars(load_sample("sp500").tail(300), "SPX", "1d",
                             rules=RegimeRules()).model_dump(mode="json")


def test_cache_cli_flags():
    import argparse

    from actors.backtest.command import add_args, spec_from_args
    p = argparse.ArgumentParser()
    add_args(p)
    assert spec_from_args(p.parse_args([])).cache == "both"
    assert spec_from_args(p.parse_args(["--no-cache"])).cache == "off"
    assert spec_from_args(p.parse_args(["--cache-only"])).cache == "only"
    with pytest.raises(SystemExit):
        p.parse_args(["--no-cache", "--cache-only"])


async def test_a_cached_answer_teaches_the_learner_nothing_new(cache):
    fake = Fake()
    router, _ = make(fake, cache)
    paid = await router.route(RouteRequest(messages=MSG, cache="both"))
    await cache.flush()
    hit = await router.route(RouteRequest(messages=MSG, cache="both"))
    assert hit.cached
    assert router.learner.knows(paid.request_id)  # its feedback counts
    assert not router.learner.knows(hit.request_id)  # the same answer's again would not


async def test_a_hits_feedback_is_recorded_by_the_router_and_teaches_nothing(cache):
    """A re-run's scores are for hits: the router that answered records them after the
    hit's own record (before: each went to the tracker — a Ray call, a lookup and a
    commit, retried until the hit's row had arrived), and the learner ignores them."""
    from actors.core.records import FeedbackRecord

    fake = Fake()
    router, sink = make(fake, cache)
    paid = await router.route(RouteRequest(messages=MSG, cache="both", policy="cost-aware",
                                           context={"task": "risk"}))
    assert router.feedback(paid.request_id, 1.0) is not None
    await cache.flush()
    sink.clear()
    hit = await router.route(RouteRequest(messages=MSG, cache="both", policy="cost-aware",
                                          context={"task": "risk"}))
    assert hit.cached and len(fake.calls) == 1
    learned = router.learner.table()
    rec = router.feedback(hit.request_id, 0.0)
    assert isinstance(rec, FeedbackRecord) and rec.request_id == hit.request_id
    assert [type(x).__name__ for x in sink] == ["RequestRecord", "FeedbackRecord"]
    assert router.learner.table() == learned  # a hit is no new evidence, nor its score
    assert router.feedback("never-routed", 1.0) is None  # the tracker still checks those
