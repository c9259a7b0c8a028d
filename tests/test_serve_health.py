"""A replica's health probe when the router is gone: Serve's controller must see a failed
check (three in a row stop a replica), never the replica's own crash (which stops it at
once). The probe runs in a real Ray actor against a really killed one, and the error is
classified the way Serve's controller classifies it (deployment_state.py:
`except RayActorError` → crashed, `except RayError` → failed check)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from ray.exceptions import RayActorError, RayError

from serve.health import RouterUnreachable, router_answers


def _controller_verdict(ray, ref) -> str:
    try:
        ray.get(ref)
        return "healthy"
    except RayActorError:
        return "crashed"
    except RayError:
        return "failed check"


def test_a_dead_router_is_a_failed_check_not_the_replicas_crash(ray_cluster):
    ray = ray_cluster

    @ray.remote(max_restarts=0)
    class Router:
        def budgets(self) -> list:
            return []

    @ray.remote
    class Replica:
        """Runs the real RouterIngress.check_health against the router handle it is given."""

        async def check_health(self, router) -> None:
            from serve.app import RouterIngress

            llm = SimpleNamespace(budgets=lambda: ray.get(router.budgets.remote()))
            await RouterIngress.func_or_class.check_health(SimpleNamespace(llm=llm))

        async def raw(self, router) -> None:  # what the probe did before: the error as is
            await asyncio.to_thread(lambda: ray.get(router.budgets.remote()))

    router, replica = Router.remote(), Replica.remote()
    assert _controller_verdict(ray, replica.check_health.remote(router)) == "healthy"
    ray.kill(router, no_restart=True)
    assert _controller_verdict(ray, replica.raw.remote(router)) == "crashed"  # the old bug
    assert _controller_verdict(ray, replica.check_health.remote(router)) == "failed check"
    with pytest.raises(RayError, match="router did not answer the health probe"):
        ray.get(replica.check_health.remote(router))
    assert ray.get(replica.__ray_ready__.remote())  # the replica itself is alive


def test_a_probe_that_hangs_or_fails_names_what_went_wrong():
    def hang() -> None:
        import time

        time.sleep(5)

    with pytest.raises(RouterUnreachable, match="TimeoutError"):
        asyncio.run(router_answers(hang, timeout_s=0.05))
    with pytest.raises(RouterUnreachable, match="ValueError: bad"):
        asyncio.run(router_answers(lambda: (_ for _ in ()).throw(ValueError("bad"))))
    asyncio.run(router_answers(lambda: None))
