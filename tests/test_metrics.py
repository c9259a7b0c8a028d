"""The metric set without Ray: names Prometheus shows, and values that reach the backend
on their own after a burst (no later attempt needed to push them)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from actors.shells import metrics as mod
from actors.shells.metrics import METRICS, Metrics, MetricsSpec, exported_names
from tests.waiting import async_wait_until


class Recorder:
    """Stands in for ray.util.metrics objects: records what the project pushes."""

    def __init__(self) -> None:
        self.pushed: dict[str, list[tuple[str, float, dict[str, str]]]] = defaultdict(list)

    def __call__(self, defn):
        rec = self

        class One:
            def inc(self, value, tags):
                rec.pushed[defn.key].append(("inc", value, tags))

            def observe(self, value, tags):
                rec.pushed[defn.key].append(("observe", value, tags))

            def set(self, value, tags):
                rec.pushed[defn.key].append(("set", value, tags))

        return One()

    def total(self, key: str, **tags: str) -> float:
        return sum(v for _, v, t in self.pushed[key] if all(t.get(k) == x for k, x in tags.items()))


def test_prometheus_names_follow_rays_rules():
    by = {m.key: m for m in METRICS}
    assert by["attempts"].prometheus_names() == ("ray_llm_router_attempts_total",)
    assert by["breaker"].prometheus_names() == ("ray_llm_router_breaker_state",)
    assert set(by["latency"].prometheus_names()) == {
        "ray_llm_router_latency_seconds_bucket", "ray_llm_router_latency_seconds_count",
        "ray_llm_router_latency_seconds_sum"}
    assert "ray_llm_router_requests_total" in exported_names()
    assert len({m.key for m in METRICS}) == len(METRICS) == len({m.name for m in METRICS})


def test_no_request_ids_or_free_text_in_any_tag():
    allowed = {"provider", "outcome", "error_class", "direction", "policy", "user", "part",
               "window"}
    for m in METRICS:
        assert set(m.tags) <= allowed, m


async def test_last_values_of_a_burst_are_pushed_without_a_later_attempt(monkeypatch):
    monkeypatch.setattr(mod, "FLUSH_S", 0.05)
    rec = Recorder()
    m = Metrics(make=rec)
    for _ in range(12):
        m.attempt("llama", True, None, 0.2, 0.001, 10, 5)
    m.attempt("llama", False, "server", 0.1, 0.0, 0, 0)
    assert rec.total("attempts") == 0  # summed locally first
    await async_wait_until(lambda: rec.total("attempts") == 13, 5, what="13 attempts pushed")
    assert rec.total("attempts", outcome="ok") == 12
    assert rec.total("failures", error_class="server") == 1
    assert rec.total("tokens", direction="input") == 120
    assert rec.total("cost") == pytest.approx(0.012)
    # one push per metric and tag set: the burst was summed, not sent value by value
    assert len([p for p in rec.pushed["attempts"] if p[2]["outcome"] == "ok"]) == 1
    assert len(rec.pushed["latency"]) == 12  # histogram values each observed


async def test_a_second_burst_arms_the_timer_again(monkeypatch):
    monkeypatch.setattr(mod, "FLUSH_S", 0.05)
    rec = Recorder()
    m = Metrics(make=rec)
    m.add("budget_warnings", 1, provider="*")
    await async_wait_until(lambda: rec.total("budget_warnings") == 1, 5)
    m.add("budget_warnings", 2, provider="*")
    await async_wait_until(lambda: rec.total("budget_warnings") == 3, 5)


def test_without_an_event_loop_values_are_pushed_at_once():
    rec = Recorder()
    m = Metrics(make=rec)
    m.attempt("claude", True, None, 0.3, 0.01, 100, 50)
    assert rec.total("attempts") == 1 and rec.total("tokens") == 150


def test_gauges_are_set_at_once_and_disabled_metrics_do_nothing(monkeypatch):
    rec = Recorder()
    m = Metrics(make=rec)
    m.breaker("claude", "open")
    assert rec.pushed["breaker"] == [("set", 2.0, {"provider": "claude"})]
    off = Metrics(enabled=False, make=rec)
    off.attempt("claude", True, None, 0.3, 0.01, 100, 50)
    off.breaker("claude", "open")
    assert not off.enabled and rec.total("attempts") == 0
    monkeypatch.setattr(mod, "_ray_worker", lambda: False)  # the session may have Ray up
    assert Metrics().enabled is False  # outside a Ray worker: a no-op


def test_metrics_section_is_validated_at_load():
    from actors.config import ConfigError, parse_config
    from tests.conftest import make_config

    data = make_config(__import__("pathlib").Path("/tmp"))
    data["metrics"] = {"top_users": -1}
    with pytest.raises(ConfigError, match=r"metrics\.top_users"):
        parse_config(data)
    data["metrics"] = {"user": ["a"]}
    with pytest.raises(ConfigError, match=r"metrics\.user: unknown key"):
        parse_config(data)
    data["metrics"] = {"users": ["desk-a"], "top_users": 3}
    assert parse_config(data).metrics == MetricsSpec(users=("desk-a",), top_users=3)


def test_a_timer_left_on_a_closed_loop_does_not_hold_values_back(monkeypatch):
    monkeypatch.setattr(mod, "FLUSH_S", 10.0)
    rec = Recorder()

    async def burst():
        m = Metrics(make=rec)
        for _ in range(100):
            m.add("attempts", 1, provider="x", outcome="ok")
        return m

    m = asyncio.run(burst())
    assert rec.total("attempts") == 0  # the loop ended before the timer fired
    monkeypatch.setattr(mod, "FLUSH_S", 0.05)

    async def later():  # another loop: the dead loop's timer must not block a new one
        m.add("attempts", 1, provider="x", outcome="ok")
        await async_wait_until(lambda: rec.total("attempts") == 101, 5)

    asyncio.run(later())
    assert len(rec.pushed["attempts"]) == 1  # the 100 and the 1 went out summed, once


def test_readme_names_the_metrics_as_prometheus_shows_them():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    named = set(re.findall(r"\bray_llm_router_\w+", readme))
    assert named <= exported_names(), named - exported_names()
    for m in METRICS:
        assert m.prometheus_names()[0] in readme, m.name
        # the name Ray is given is not what Prometheus shows: never document it bare
        assert not re.search(rf"(?<!ray_)\b{m.name}\b(?!_)", readme.replace(
            "was called `llm_router_requests`", "")), m.name
