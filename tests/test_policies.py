"""Policies over hand-made snapshots: pure, no Ray."""

from __future__ import annotations

import timeit

import pytest

from actors.policies import POLICIES, PolicySettings, eligible, get_policy, quality, rank
from actors.snapshot import Candidate, Need, Snapshot

S = PolicySettings()


def snap(name: str, **kw) -> Snapshot:
    base = dict(name=name, model=name, api="openai", input_cost_per_mtok=1.0,
                output_cost_per_mtok=2.0, max_input_tokens=100_000, max_output_tokens=4096)
    base.update(kw)
    return Snapshot(**base)


def cand(name: str, stats: dict | None = None, **kw) -> Candidate:
    return Candidate.from_snapshot(snap(name, **kw), stats)


NEED = Need(prompt_tokens=1000, max_tokens=500)


def test_accuracy_first_prefers_success_times_confidence():
    a = cand("a", success_rate=0.99, mean_confidence=0.6, samples=200)
    b = cand("b", success_rate=0.95, mean_confidence=0.9, samples=200)
    c = cand("c", success_rate=0.50, mean_confidence=0.99, samples=200)
    ranked = get_policy("accuracy-first")([a, b, c], NEED, S)
    assert [n for n, _ in ranked] == ["b", "a", "c"]


def test_prior_lets_a_new_provider_be_tried():
    veteran = cand("old", success_rate=0.9, mean_confidence=0.6, samples=500)
    new = cand("new", samples=0)
    assert quality(new, S) > quality(veteran, S)
    assert get_policy("accuracy-first")([veteran, new], NEED, S)[0][0] == "new"


def test_feedback_score_moves_accuracy_first():
    stats_good = {"success_rate": 0.95, "mean_confidence": 0.8, "samples": 100,
                  "mean_score": 0.8, "score_samples": 100}
    stats_bad = dict(stats_good, mean_score=0.2)
    a = cand("a", stats_bad)
    b = cand("b", stats_good)
    assert get_policy("accuracy-first")([a, b], NEED, S)[0][0] == "b"
    # without feedback they tie on quality, so feedback is what decided
    assert quality(cand("a", dict(stats_good, score_samples=0)), S) == pytest.approx(
        quality(cand("b", dict(stats_good, score_samples=0)), S))


def test_cost_aware_cheapest_within_quality_margin():
    cheap_bad = cand("cheap_bad", success_rate=0.3, mean_confidence=0.5, samples=100,
                     input_cost_per_mtok=0.1, output_cost_per_mtok=0.1)
    cheap_ok = cand("cheap_ok", success_rate=0.97, mean_confidence=0.78, samples=100,
                    input_cost_per_mtok=0.7, output_cost_per_mtok=0.7)
    pricey = cand("pricey", success_rate=0.99, mean_confidence=0.8, samples=100,
                  input_cost_per_mtok=10, output_cost_per_mtok=30)
    ranked = [n for n, _ in get_policy("cost-aware")([pricey, cheap_bad, cheap_ok], NEED, S)]
    assert ranked[0] == "cheap_ok"
    assert ranked.index("pricey") < ranked.index("cheap_bad")  # outside margin: last


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


def test_context_figures_override_snapshot():
    c = cand("a", {"success_rate": 0.5, "samples": 40, "source": "context"}, success_rate=1.0)
    assert c.success_rate == 0.5 and c.source == "context"


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown policy 'fastest'.*accuracy-first"):
        rank("fastest", [], NEED, S, 0.0)


def test_every_policy_handles_empty_and_single():
    for fn in POLICIES.values():
        assert fn([], NEED, S) == []
        assert [n for n, _ in fn([cand("x")], NEED, S)] == ["x"]


def test_decision_is_cheap_enough_to_measure():
    """Not a timing assertion: just proves the benchmark's code path runs on 5 providers."""
    cands = [cand(f"p{i}", success_rate=0.9, samples=10 * i, p50_s=0.1 * i) for i in range(5)]
    t = timeit.timeit(lambda: rank("accuracy-first", cands, NEED, S, 0.0), number=10)
    assert t > 0


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
