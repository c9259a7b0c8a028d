"""A replica's health probe when the router is gone: Serve's controller must see a failed
check (three in a row stop a replica), never the replica's own crash (which stops it at
once). The probe runs in a real Ray actor against a really killed one, and the error is
classified the way Serve's controller classifies it (deployment_state.py:
`except RayActorError` → crashed, `except RayError` → failed check)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from ray.exceptions import ActorUnavailableError, RayActorError, RayError

from serve.health import RouterUnreachable, coming_up, router_answers
from tests.waiting import wait_until


def _controller_verdict(ray, ref) -> str:
    try:
        ray.get(ref)
        return "healthy"
    except RayActorError:
        return "crashed"
    except RayError:
        return "failed check"


def test_a_router_down_is_never_the_replicas_crash_and_a_restart_keeps_it(ray_cluster,
                                                                          tmp_path):
    ray = ray_cluster
    release = tmp_path / "router may start again"

    @ray.remote(max_restarts=1)
    class Router:
        def __init__(self, release: str) -> None:
            import os
            import time

            if ray.get_runtime_context().was_current_actor_reconstructed:
                while not os.path.exists(release):  # a slow restart, held open by the test
                    time.sleep(0.05)

        def budgets(self) -> list:
            return []

    @ray.remote
    class Replica:
        """Runs the real RouterIngress.check_health against the router handle it is given."""

        async def check_health(self, router) -> None:
            from serve.app import RouterIngress

            llm = SimpleNamespace(budgets=lambda: ray.get(router.budgets.remote(), timeout=2),
                                  handles=SimpleNamespace(router=router))
            await RouterIngress.func_or_class.check_health(SimpleNamespace(llm=llm))

        async def raw(self, router) -> None:  # what the probe did before: the error as is
            await asyncio.to_thread(lambda: ray.get(router.budgets.remote()))

    router, replica = Router.remote(str(release)), Replica.remote()
    assert _controller_verdict(ray, replica.check_health.remote(router)) == "healthy"
    ray.kill(router, no_restart=False)  # Ray restarts it; the restart waits for `release`
    wait_until(lambda: coming_up(router), 60, what="the router restarting")
    assert _controller_verdict(ray, replica.check_health.remote(router)) == "healthy"
    release.touch()
    def back() -> bool:
        try:
            return ray.get(router.budgets.remote()) == []
        except ActorUnavailableError:  # still restarting
            return False

    wait_until(back, 60, what="the router back")
    assert not coming_up(router)
    ray.kill(router, no_restart=True)  # gone for good
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
