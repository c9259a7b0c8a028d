"""A router restart seen from its callers (actors/caller/router_recovery.py): requests sent while
it restarts wait for it instead of failing against it — what left backtest bars
unfinished in the PostgreSQL chaos run (their retries were spent on the restarting router).
Plain asyncio, no Ray: the router is a fake that is down for a given number of probes."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorUnavailableError

from actors.api import RouterClient
from actors.caller.router_recovery import RouterRecovery
from actors.routing.route import RouteRequest, RoutingError
from actors.rpc.channel import ChannelBroken
from actors.shells.system import Handles


class FakeRouter:
    """Restarting for `down_probes` probes after `kill()`; calls meanwhile fail as Ray's do."""

    def __init__(self, down_probes: int = 3) -> None:
        self.down_probes = down_probes
        self.probes = 0
        self.restarting = False
        self.sent: list[str] = []

    def kill(self) -> None:
        self.restarting, self.probes = True, 0

    def ready_remote(self):
        async def ready() -> bool:
            self.probes += 1
            if self.restarting and self.probes <= self.down_probes:
                raise ActorUnavailableError("the actor is restarting", None)
            self.restarting = False
            return True
        return ready()

    async def call(self, req: RouteRequest) -> str:
        if self.restarting:
            raise ChannelBroken("router unavailable: ActorUnavailableError")
        self.sent.append(req.request_id or "")
        return f"answer to {req.request_id}"


class _Ready:
    def __init__(self, router: FakeRouter) -> None:
        self.remote = router.ready_remote


class _Handle:
    def __init__(self, router: FakeRouter) -> None:
        self.ready = _Ready(router)


class _Tracker:
    """Takes the unknown-outcome placeholders a client records."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.record = self

    def remote(self, records):
        async def record() -> int:
            self.rows.extend(r.request_id for r in records)
            return len(records)
        return record()


def client(router: FakeRouter) -> tuple[RouterClient, _Tracker]:
    tracker = _Tracker()
    c = RouterClient(Handles(router=_Handle(router), tracker=tracker, providers={},
                             simulator=None, simulator_url=None), config=None)  # type: ignore[arg-type]
    c._router_channel = router  # type: ignore[assignment]
    c._router_recovery.poll_s = 0.001
    return c, tracker


def req(rid: str) -> RouteRequest:
    return RouteRequest(messages=[{"role": "user", "content": "Signal?"}], request_id=rid,
                        timeout=30)


def test_a_request_sent_while_the_router_restarts_waits_for_it() -> None:
    """The bar in flight at the kill has an unknown outcome; its retry, sent while the
    router restarts, reaches the restarted router (before: a second unknown outcome, and
    a third — the bar's retries spent in seconds)."""
    async def run() -> None:
        router = FakeRouter(down_probes=3)
        c, tracker = client(router)
        assert await c.aroute(req("before")) == "answer to before"
        router.kill()
        with pytest.raises(RoutingError):
            await c.aroute(req("in-flight"))  # the router died holding it
        assert await c.aroute(req("retry")) == "answer to retry"
        assert router.sent == ["before", "retry"]
        assert tracker.rows == ["in-flight"]  # one unknown outcome, not one per retry
        assert router.probes == 4  # three while restarting, one that answered

    asyncio.run(run())


def test_many_waiters_share_one_probe_and_a_live_router_costs_none() -> None:
    async def run() -> None:
        router = FakeRouter(down_probes=5)
        c, _ = client(router)
        router.kill()
        with pytest.raises(RoutingError):
            await c.aroute(req("in-flight"))
        out = await asyncio.gather(*(c.aroute(req(f"bar-{i}")) for i in range(20)))
        assert len(out) == 20 and router.probes == 6  # not 20 × 6
        await c.aroute(req("later"))
        assert router.probes == 6  # the router was never lost since: no probe at all

    asyncio.run(run())


def test_waiting_is_bounded_and_an_error_from_the_router_means_it_is_up() -> None:
    async def never() -> None:
        raise ActorUnavailableError("restarting", None)

    async def refused() -> None:
        raise RuntimeError("this router was fenced")  # its own answer: it is running

    async def run() -> None:
        rec = RouterRecovery(never, (ActorUnavailableError,), poll_s=0.001)
        rec.lost()
        assert await rec.back(0.05) is False and rec.down
        up = RouterRecovery(refused, (ActorUnavailableError,), poll_s=0.001)
        up.lost()
        assert await up.back(5.0) is True and not up.down

    asyncio.run(run())
