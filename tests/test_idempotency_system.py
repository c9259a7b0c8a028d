"""Request ids as idempotency keys through the real actors and the loopback simulator: what the
audit trail says was spent equals, to the cent, what the simulator billed."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest
import ray

from actors.api import RouterClient, connect
from actors.routing.route import RoutingError
from tests.conftest import make_config, restart_router


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory) -> RouterClient:
    client = connect(config=make_config(tmp_path_factory.mktemp("idem")))
    yield client
    client.shutdown(stop_ray=False)


def billed_usd(llm: RouterClient, stats: dict) -> float:
    """What the simulator's billed tokens cost at the configured prices."""
    by_model = {p.model: p for p in llm.config.providers}
    return sum((m["input_tokens"] * by_model[name].input_cost_per_mtok
                + m["output_tokens"] * by_model[name].output_cost_per_mtok) / 1e6
               for name, m in stats["models"].items())


def test_reused_ids_under_concurrency_are_billed_and_recorded_once(llm):
    ray.get(llm.simulator.reset_stats.remote())
    t0 = time.time()
    run = uuid.uuid4().hex[:8]
    ids = [f"idem-{run}-{i}" for i in range(12)]
    jobs = [(rid, f"{rid}: SPY daily, RSI {50 + i}. Trade signal?") for i, rid in
            enumerate(ids) for _ in range(5)]
    jobs += [(rid, f"{rid}: a different question") for rid in ids]
    random.Random(7).shuffle(jobs)

    async def one(rid: str, text: str):
        try:
            return await llm.acomplete(text, request_id=rid, policy="cost-aware",
                                       max_tokens=200, timeout=60)
        except RoutingError as exc:
            return exc

    async def all_of_them():
        return await asyncio.gather(*(one(rid, text) for rid, text in jobs))

    out = asyncio.run(all_of_them())
    for rid in ids:
        mine = [o for (r, _), o in zip(jobs, out, strict=True) if r == rid]
        answers = [o for o in mine if not isinstance(o, BaseException)]
        conflicts = [o for o in mine if isinstance(o, RoutingError)]
        assert all(c.error_class.value == "idempotency_conflict" for c in conflicts), conflicts
        assert len(answers) in (1, 5) and len(answers) + len(conflicts) == 6
        assert sum(not a.replayed for a in answers) == 1  # routed once, replayed the rest
        assert len({a.text for a in answers}) == 1
    stats = ray.get(llm.simulator.stats.remote())
    assert stats["totals"]["requests"] == stats["totals"]["ok"] == len(ids)
    llm.flush()
    spent = ray.get(llm.handles.tracker.spend_since.remote(t0))
    assert spent > 0 and round(spent, 2) == round(billed_usd(llm, stats), 2)
    assert spent == pytest.approx(billed_usd(llm, stats), rel=1e-9)
    for rid in ids:
        rows = llm.audit(rid)
        assert [r["kind"] for r in rows] == ["attempt", "request"]


def test_a_restarted_router_replays_without_calling_a_provider(llm):
    rid = f"restart-{uuid.uuid4().hex[:8]}"
    first = llm.complete("Will the Fed cut? Trade signal.", request_id=rid, output="trade_signal",
                         max_tokens=300)
    llm.flush()  # outcomes reach the disk within ~20 ms; flush waits for that
    restart_router(llm)
    before = ray.get(llm.simulator.stats.remote())["totals"]["requests"]
    again = llm.complete("Will the Fed cut? Trade signal.", request_id=rid,
                         output="trade_signal", max_tokens=300)
    assert again.replayed and again.text == first.text and again.parsed == first.parsed
    assert again.cost_usd == first.cost_usd
    assert ray.get(llm.simulator.stats.remote())["totals"]["requests"] == before
    with pytest.raises(RoutingError) as info:
        llm.complete("Something else entirely", request_id=rid)
    assert info.value.error_class.value == "idempotency_conflict"


def test_an_unsafe_request_id_is_refused_before_anything_is_billed(llm):
    before = ray.get(llm.simulator.stats.remote())["totals"]["requests"]
    with pytest.raises(ValueError, match="request id"):
        llm.complete("hi", request_id="abc\r\nx-router-provider: evil")
    assert ray.get(llm.simulator.stats.remote())["totals"]["requests"] == before
