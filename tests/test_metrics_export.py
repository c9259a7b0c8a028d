"""What Prometheus shows agrees with the audit trail after a burst — scraped for real from
Ray's metrics export port, with nothing sent after the burst to push the last values out.

Providers get names of their own and every request an allow-listed end user, so series
left by other test modules on the shared cluster cannot mix in.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.api import RouterClient, connect
from actors.routing.route import RoutingError
from actors.shells.metrics import METRICS, exported_names
from tests.conftest import make_config, sim, sim_reset
from tests.waiting import wait_until

USERS = ("mx-desk-a", "mx-desk-b")
PROVIDERS = ("mx-gemini", "mx-mixtral", "mx-llama")


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory) -> RouterClient:
    cfg = make_config(tmp_path_factory.mktemp("metrics"), metrics={"users": list(USERS),
                                                                    "top_users": 0})
    keep = {"gemini": "mx-gemini", "mixtral": "mx-mixtral", "llama": "mx-llama"}
    cfg["providers"] = [dict(p, name=keep[p["name"]]) for p in cfg["providers"]
                        if p["name"] in keep]
    client = connect(config=cfg)
    yield client
    client.shutdown(stop_ray=False)


def scrape() -> str:
    import ray

    ports = [n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]]
    return "".join(httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=10).text for p in ports)


def samples(text: str, name: str, **match: str) -> Counter:
    """Sum of a series over Ray's own labels (worker, node, …), keyed by the project's."""
    keys = next((m.tags for m in METRICS if name.startswith("ray_" + m.name)), ())
    out: Counter = Counter()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name != name or any(s.labels.get(k) != v for k, v in match.items()):
                continue
            out[tuple(s.labels.get(k, "") for k in keys)] += s.value
    return out


def test_prometheus_counts_agree_with_the_audit_trail_after_a_burst(llm):
    sim(llm, "open-mixtral-8x7b", server_error=0.5)  # failed attempts, retries, fallbacks

    async def burst():
        async def one(i: int):
            try:
                return await llm.acomplete(
                    f"burst {i}: SPY RSI 55, signal?", provider=PROVIDERS[i % 3],
                    fallbacks=[PROVIDERS[i % 3], "mx-gemini"], max_tokens=64,
                    user=USERS[i % 2], policy="latency-aware" if i % 2 else "cost-aware")
            except RoutingError as exc:
                return exc

        return await asyncio.gather(*(one(i) for i in range(36)))

    try:
        results = asyncio.run(burst())
    finally:
        sim_reset(llm, "open-mixtral-8x7b")
    ids = [r.trace.request_id for r in results]
    attempts: Counter = Counter()
    requests: Counter = Counter()
    tokens = 0
    for rid in ids:
        for row in llm.audit(rid):  # flushes the router's records to the tracker first
            if row["kind"] == "attempt":
                attempts[(row["provider"], "ok" if row["ok"] else "error")] += 1
                tokens += row["input_tokens"] + row["output_tokens"]
            elif row["kind"] == "request":
                requests[(row["policy"], row["provider"] or "none",
                          "ok" if row["ok"] else row["error_class"])] += 1
    assert sum(requests.values()) == 36 and attempts[("mx-mixtral", "error")] > 0

    def seen():
        text = scrape()
        got_attempts = Counter({k: v for k, v in samples(
            text, "ray_llm_router_attempts_total").items() if k[0] in PROVIDERS})
        got_requests = Counter()
        for (policy, provider, outcome, user), v in samples(
                text, "ray_llm_router_requests_total").items():
            if user in USERS:
                got_requests[(policy, provider, outcome)] += v
        got_tokens = sum(v for k, v in samples(text, "ray_llm_router_tokens_total").items()
                         if k[0] in PROVIDERS)
        return (got_attempts == attempts and got_requests == requests
                and got_tokens == tokens) or (got_attempts, got_requests, got_tokens)

    # Ray reports to its agent every few seconds; no request after the burst pushes anything
    last: list = [None]

    def agree() -> bool:
        last[0] = seen()
        return last[0] is True

    try:
        wait_until(agree, 60, every=1.0, what="Prometheus counts equal to the audit trail")
    except AssertionError:
        pytest.fail(f"Prometheus (attempts, requests, tokens) {last[0]} vs the audit trail "
                    f"{(attempts, requests, tokens)}")
    text = scrape()
    by_user = samples(text, "ray_llm_router_requests_total")
    assert {k[3] for k in by_user if k[3] in USERS} == set(USERS)
    time_split = samples(text, "ray_llm_router_request_seconds_total")
    assert {k[1] for k in time_split} >= {"router", "provider"}
    shown = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples
             if s.name.startswith("ray_llm_router_")}
    assert shown <= exported_names()  # every name Prometheus shows is in the README table
