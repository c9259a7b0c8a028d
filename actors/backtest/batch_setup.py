"""Wiring of backtest batch mode: one batch client per provider that has a batch API, and
the router's two batch methods (actors/routing/batch_route.py) as plain async functions.

The batch clients run in the driver (they submit, poll and read jobs; nothing waits on a
provider actor for hours), so a real provider's key must be in the driver's environment
too — the same variable as in its config (`api_key_env`). Simulated runs use the
session's simulator.
"""

from __future__ import annotations

from typing import Any

from actors.backtest.batch_journal import BatchJournal
from actors.backtest.batch_run import BatchRun
from actors.backtest.spec import BacktestError
from actors.clients.batch import BatchApi, batch_api
from actors.routing.batch_route import BatchPlan, BatchSettle
from actors.routing.route import RouteRequest, RouteResult, RoutingError
from actors.shells.ray_calls import aget
from actors.simulator import simulator_base_url

#: Any non-empty key reaches the simulator (it checks only that one is sent).
SIMULATED_KEY = "simulated"


def batch_clients(client: Any) -> dict[str, BatchApi]:
    """A batch client for each enabled provider whose config sets `batch_discount`."""
    cfg = client.config
    out: dict[str, BatchApi] = {}
    for spec in cfg.providers:
        if not spec.enabled or spec.batch_discount is None:
            continue
        if cfg.simulate:
            url = client.handles.simulator_url
            out[spec.name] = batch_api(spec, SIMULATED_KEY, simulator_base_url(spec.api, url))
            continue
        key = spec.api_key
        if key is None:
            raise BacktestError(f"batch mode: provider {spec.name} has a batch API and the "
                                f"batch jobs are submitted from this process, but "
                                f"{spec.api_key_env} is not set here")
        out[spec.name] = batch_api(spec, key)
    return out


def router_batch(client: Any) -> tuple[Any, Any]:
    """(plan, settle): the router actor's batch_plan / batch_settle, awaited."""
    router = client.handles.router

    async def plan(reqs: list[RouteRequest]) -> list[BatchPlan]:
        return await aget(router.batch_plan.remote(reqs))

    async def settle(items: list[BatchSettle]) -> list[RouteResult | RoutingError]:
        return await aget(router.batch_settle.remote(items))

    return plan, settle


def batch_run(run: Any, client: Any) -> BatchRun:
    plan, settle = router_batch(client)
    return BatchRun(run, batch_clients(client), BatchJournal(run.store.dir), plan, settle)


async def close(b: BatchRun) -> None:
    for api in b.apis.values():
        await api.aclose()
