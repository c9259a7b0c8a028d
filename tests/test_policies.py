"""Policies over hand-made snapshots: pure, no Ray."""

from __future__ import annotations

import pytest

from actors.core.snapshot import Candidate, Need, Snapshot
from actors.policy.policies import (
    POLICIES,
    PolicySettings,
    eligible,
    expected_cost,
    get_policy,
    rank,
)

S = PolicySettings()


def snap(name: str, **kw) -> Snapshot:
    base = dict(name=name, model=name, api="openai", input_cost_per_mtok=1.0,
                output_cost_per_mtok=2.0, max_input_tokens=100_000, max_output_tokens=4096)
    base.update(kw)
    return Snapshot(**base)


def cand(name: str, quality: float = 0.7, draw: float | None = None,
         output_tokens: float | None = None, **kw) -> Candidate:
    snapshot = snap(name, **kw)
    return Candidate(name, snapshot, snapshot.success_rate, quality,
                     quality if draw is None else draw, 0.0, output_tokens,
                     snapshot.mean_confidence, snapshot.p50_s, snapshot.p95_s)


NEED = Need(prompt_tokens=1000, max_tokens=500)


def test_accuracy_first_ranks_by_expected_outcome_score():
    a = cand("a", quality=0.80, success_rate=0.99)
    b = cand("b", quality=0.70, success_rate=0.99, mean_confidence=0.99)
    c = cand("c", quality=0.95, success_rate=0.50)  # right when it answers, rarely answers
    ranked = get_policy("accuracy-first")([a, b, c], NEED, S)
    assert [n for n, _ in ranked] == ["a", "b", "c"]
    assert ranked[0][1] == pytest.approx(0.99 * 0.80)


def test_accuracy_first_without_outcomes_falls_back_to_confidence_then_price():
    pricey = cand("pricey", input_cost_per_mtok=10, output_cost_per_mtok=30)
    cheap = cand("cheap", input_cost_per_mtok=0.5, output_cost_per_mtok=1)
    sure = cand("sure", mean_confidence=0.9)
    order = [n for n, _ in get_policy("accuracy-first")([pricey, cheap, sure], NEED, S)]
    assert order == ["sure", "cheap", "pricey"]


def test_sampled_ranking_uses_the_draws():
    a = cand("a", quality=0.8, draw=0.5)
    b = cand("b", quality=0.7, draw=0.9)
    assert get_policy("accuracy-first")([a, b], NEED, S)[0][0] == "a"
    sampled = Need(prompt_tokens=1000, max_tokens=500, sampled=True)
    assert get_policy("accuracy-first")([a, b], sampled, S)[0][0] == "b"


def test_cost_aware_maximises_value_minus_cost_for_this_request():
    strong = cand("strong", quality=0.85, input_cost_per_mtok=3.0, output_cost_per_mtok=15.0,
                  output_tokens=100)
    cheap = cand("cheap", quality=0.75, input_cost_per_mtok=0.2, output_cost_per_mtok=1.0,
                 output_tokens=100)
    short = Need(prompt_tokens=200, max_tokens=None, value_usd=0.05)
    # short prompt: strong costs 0.0021, its 0.10 of score is worth 0.005 → strong
    assert get_policy("cost-aware")([strong, cheap], short, S)[0][0] == "strong"
    # long prompt: strong's premium (~0.028) is now larger than what 0.10 is worth
    long = Need(prompt_tokens=10_000, max_tokens=None, value_usd=0.05)
    ranked = get_policy("cost-aware")([strong, cheap], long, S)
    assert ranked[0][0] == "cheap"
    assert ranked[0][1] == pytest.approx(0.05 * 0.75 - expected_cost(cheap, long))
    # a higher value of a right answer buys the strong one back
    rich = Need(prompt_tokens=10_000, max_tokens=None, value_usd=1.0)
    assert get_policy("cost-aware")([strong, cheap], rich, S)[0][0] == "strong"


def test_expected_cost_uses_learned_output_tokens_capped_by_max_tokens():
    c = cand("c", input_cost_per_mtok=1.0, output_cost_per_mtok=10.0, output_tokens=200)
    assert expected_cost(c, Need(prompt_tokens=1000, max_tokens=None)) == pytest.approx(0.003)
    assert expected_cost(c, Need(prompt_tokens=1000, max_tokens=50)) == pytest.approx(0.0015)
    unknown = cand("u", input_cost_per_mtok=1.0, output_cost_per_mtok=10.0)
    assert expected_cost(unknown, Need(prompt_tokens=0, max_tokens=None,
                                       expected_output_tokens=400)) == pytest.approx(0.004)


def test_latency_aware_p50_then_p95():
    a = cand("a", p50_s=0.5, p95_s=2.0, samples=50)
    b = cand("b", p50_s=0.5, p95_s=0.9, samples=50)
    c = cand("c", p50_s=0.3, p95_s=3.0, samples=50)
    assert [n for n, _ in get_policy("latency-aware")([a, b, c], NEED, S)] == ["c", "b", "a"]


def test_exclusions_breaker_context_budget():
    now = 1000.0
    cands = [
        cand("open", state="open", open_until=now + 10),
        cand("expired", state="open", open_until=now - 1),
        cand("small", max_input_tokens=500),
        cand("short", max_output_tokens=100),
        cand("broke"),
        cand("fine"),
    ]
    ok, excluded = eligible(cands, NEED, now, {"broke": "budget_exceeded: global hourly"})
    assert [c.name for c in ok] == ["expired", "fine"]
    assert excluded["open"] == "breaker_open"
    assert excluded["small"].startswith("context_too_long")
    assert "max_tokens" in excluded["short"]
    assert excluded["broke"].startswith("budget_exceeded")


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown policy 'fastest'.*accuracy-first"):
        rank("fastest", [], NEED, S, 0.0)


def test_every_policy_handles_empty_and_single():
    for fn in POLICIES.values():
        assert fn([], NEED, S) == []
        assert [n for n, _ in fn([cand("x")], NEED, S)] == ["x"]


def test_latency_aware_spreads_a_burst_by_queueing_at_rate_limits():
    fast_slow_rate = cand("fast", p50_s=0.3, samples=50, rpm=60, max_concurrency=32)
    slower_wide = cand("wide", p50_s=0.6, samples=50, rpm=6000, max_concurrency=32)
    idle = Need(prompt_tokens=1000, max_tokens=500)
    assert get_policy("latency-aware")([fast_slow_rate, slower_wide], idle, S)[0][0] == "fast"
    # 5 requests already queued at 1 req/s: ~6 s for the next one there, p50 elsewhere.
    busy = Need(prompt_tokens=1000, max_tokens=500, ahead={"fast": 5})
    ranked = get_policy("latency-aware")([fast_slow_rate, slower_wide], busy, S)
    assert [n for n, _ in ranked] == ["wide", "fast"]
    assert ranked[1][1] == pytest.approx(6.0)
    # Below the provider's concurrency with no rate limit, queueing adds nothing.
    open_ended = cand("open", p50_s=0.3, samples=50, rpm=0, max_concurrency=32)
    few = Need(prompt_tokens=1000, max_tokens=500, ahead={"open": 10})
    assert get_policy("latency-aware")([open_ended], few, S)[0][1] == pytest.approx(0.3)
    # A stale snapshot still counts what the provider itself reported waiting.
    reported = cand("fast", p50_s=0.3, samples=50, rpm=60, max_concurrency=32, waiting=5)
    assert get_policy("latency-aware")([reported, slower_wide], idle, S)[0][0] == "wide"
