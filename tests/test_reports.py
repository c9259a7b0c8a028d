"""Report reads never wait for a flush, and the replica's slow reads never take the thread
pool its health checks use."""

from __future__ import annotations

import asyncio
import inspect
import threading
from types import SimpleNamespace

import pandas as pd
import pytest

from actors.api import RouterClient
from actors.config import load_config
from actors.system import Handles
from serve import reads


class Method:
    """A stand-in actor method: records its calls, answers with a ready ObjectRef."""

    def __init__(self, calls: list[str], name: str, value: object) -> None:
        self.calls, self.name, self.value = calls, name, value

    def remote(self, *args, **kwargs):
        import ray

        self.calls.append(self.name)
        return ray.put(self.value)


def fake_client(calls: list[str]) -> RouterClient:
    frame = pd.DataFrame({"cost_usd": [1.0]})
    router = SimpleNamespace(flush=Method(calls, "flush", 0), budgets=Method(calls, "budgets", []))
    tracker = SimpleNamespace(**{n: Method(calls, n, frame) for n in
                                 ("costs", "performance", "cost_per_token")},
                              audit=Method(calls, "audit", [{"kind": "request"}]))
    return RouterClient(Handles(router, tracker, {}, None, None), load_config())


def test_reports_do_not_flush_but_own_reads_do(ray_cluster):
    calls: list[str] = []
    llm = fake_client(calls)
    llm.costs("day")
    llm.costs("hour", since="2026-11-01", until="2026-11-02")
    llm.performance()
    llm.cost_per_token()
    llm.budgets()
    assert "flush" not in calls  # the old client flushed (up to 30 s) before every report
    llm.audit("r1")  # a read of one's own writes may wait for them
    assert calls[-2:] == ["flush", "audit"]
    with pytest.raises(ValueError, match="since"):
        llm.costs("hour", since="not a time")


async def test_health_checks_never_queue_behind_slow_reads():
    gate = threading.Event()
    slow = [asyncio.ensure_future(reads.read(gate.wait)) for _ in range(50)]  # pool saturated
    try:
        # what check_health does: the loop's default executor, free of the reads above
        name = await asyncio.wait_for(
            asyncio.to_thread(lambda: threading.current_thread().name), 10)
        assert not name.startswith(reads.THREAD_PREFIX)
    finally:
        gate.set()
    await asyncio.gather(*slow)
    assert (await reads.read(lambda: threading.current_thread().name)).startswith(
        reads.THREAD_PREFIX)


def test_the_replica_reads_reports_and_audits_off_the_default_pool():
    from serve.app import RouterIngress

    cls = RouterIngress.func_or_class
    for name in ("audit", "feedback", "costs", "performance", "budgets", "providers"):
        src = inspect.getsource(getattr(cls, name))
        assert "to_thread" not in src, name
    from serve import health  # check_health's probe: the default pool, as above

    assert "router_answers" in inspect.getsource(cls.check_health)
    assert "to_thread" in inspect.getsource(health.router_answers)
