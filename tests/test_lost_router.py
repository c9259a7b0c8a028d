"""One rule for a caller whose router died holding its request (actors/caller/lost_router.py),
and for retrying an internal hop (actors/core/retry.py): plain checks, then a real Ray kill
under the blocking `complete()`."""

from __future__ import annotations

import threading
import time

import pytest

from actors.caller.lost_router import lost
from actors.core.errors import ErrorClass, task_cause
from actors.core.retry import retry_hop, retry_hop_sync
from actors.routing.route import RouteRequest, RoutingError


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"try {self.calls}")
        return "ok"


def test_a_hop_is_retried_with_a_capped_doubling_backoff():
    waits: list[float] = []
    fn = Flaky(4)
    assert retry_hop_sync(fn, tries=5, base_s=0.5, max_s=2.0, sleep=waits.append) == "ok"
    assert fn.calls == 5 and waits == [0.5, 1.0, 2.0, 2.0]


def test_a_hop_that_never_succeeds_raises_its_last_error():
    waits: list[float] = []
    with pytest.raises(ConnectionError, match="try 3"):
        retry_hop_sync(Flaky(10), tries=3, base_s=0.1, max_s=1.0, sleep=waits.append)
    assert waits == [0.1, 0.2]


async def test_the_async_hop_follows_the_same_rule():
    waits: list[float] = []
    fn = Flaky(2)

    async def once() -> str:
        return fn()

    async def sleep(s: float) -> None:
        waits.append(s)

    assert await retry_hop(once, tries=3, base_s=0.5, max_s=5.0, sleep=sleep) == "ok"
    assert waits == [0.5, 1.0]


def test_task_cause_unwraps_or_keeps():
    inner = ValueError("the tracker's own")

    class Wrapper(Exception):
        cause = inner

    assert task_cause(Wrapper()) is inner
    plain = RuntimeError("no cause")
    assert task_cause(plain) is plain


def test_the_lost_outcome_error_and_row():
    req = RouteRequest(messages=[{"role": "user", "content": "hi"}], request_id="r-1",
                       policy="cost-aware", context={"regime": "bull"})
    error, row = lost(req, "router unavailable: ActorDiedError")
    assert isinstance(error, RoutingError) and error.error_class is ErrorClass.INTERNAL
    assert "request r-1 has an unknown outcome" in error.message
    assert error.trace.request_id == "r-1" and error.trace.policy == "cost-aware"
    assert (row.request_id, row.error_class, row.ok, row.attempts) == ("r-1", "unknown_outcome",
                                                                       False, 0)
    assert row.context == {"regime": "bull"} and row.error == error.message


def test_complete_on_a_router_that_dies_records_the_unknown_outcome(ray_cluster):
    """The blocking path used to raise Ray's ActorDiedError and leave no row."""
    import ray

    from actors.caller.client import RouterClient
    from actors.shells.system import Handles

    @ray.remote(max_restarts=0)
    class Stuck:
        def __init__(self) -> None:
            self.started = threading.Event()

        def route(self, req):
            self.started.set()
            time.sleep(120)

        def begun(self) -> bool:
            return self.started.is_set()

    @ray.remote
    class Rows:
        def __init__(self) -> None:
            self.rows: list = []

        def record(self, rows: list) -> None:
            self.rows.extend(rows)

        def got(self) -> list:
            return self.rows

    router = Stuck.options(max_concurrency=4).remote()
    tracker = Rows.remote()
    client = RouterClient(Handles(router, tracker, {}, None, None, None), config=None)
    out: list = []
    caller = threading.Thread(target=lambda: out.append(_outcome(client)))
    caller.start()
    from tests.waiting import wait_until

    wait_until(lambda: ray.get(router.begun.remote()), timeout=30)  # the request is in flight
    ray.kill(router, no_restart=True)
    caller.join(timeout=60)
    assert not caller.is_alive()
    (error,) = out
    assert isinstance(error, RoutingError), error
    assert error.error_class is ErrorClass.INTERNAL and "unknown outcome" in error.message
    rows = ray.get(tracker.got.remote())
    assert [(r.request_id, r.error_class) for r in rows] == [(error.trace.request_id,
                                                              "unknown_outcome")]
    assert error.trace.request_id  # an id was given before sending, so the row can name it
    ray.kill(tracker)


def _outcome(client) -> object:
    try:
        return client.complete("hi")
    except Exception as exc:
        return exc
