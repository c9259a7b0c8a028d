"""Start or attach to the actor system: simulator, tracker, provider actors, router.

All actors are named in namespace `llm-router` and detached, so a notebook or a second
process attaches to the same ones (`get_if_exists`) instead of starting a second copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray

from actors.config import Config
from actors.placement import state_actor_options
from actors.provider import ProviderActor
from actors.router_actor import NAMESPACE, RouterActor, provider_actor_name

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1)
class SimulatorActor:
    """`simulator`: owns the built-in simulator process for providers without API keys.

    Named so every node finds it; the process binds loopback, so the simulator serves
    the node it runs on (a multi-host cluster needs real keys or a reachable host).
    """

    def __init__(self, host: str, port: int, latency_scale: float, seed: int | None = None) -> None:
        from actors.simulator.server import SimulatorProcess

        self._sim = SimulatorProcess(host=host, port=port, latency_scale=latency_scale, seed=seed)
        self._sim.start()

    def url(self) -> str:
        return self._sim.url

    def set_profile(self, model: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self._sim.set_profile(model, **fields).model_dump()

    def reset_profile(self, model: str) -> dict[str, Any]:
        return self._sim.reset_profile(model).model_dump()

    def stats(self) -> dict[str, Any]:
        return self._sim.stats().model_dump()

    def reset_stats(self) -> None:
        self._sim.reset_stats()

    def stop(self) -> None:
        self._sim.stop()


@dataclass
class Handles:
    router: Any
    tracker: Any
    providers: dict[str, Any]
    simulator: Any | None
    simulator_url: str | None


def _named(cls: Any, name: str, **opts: Any) -> Any:
    return cls.options(name=name, namespace=NAMESPACE, lifetime="detached",
                       get_if_exists=True, **opts)


def start_system(config: Config) -> Handles:
    """Create whatever is missing, attach to what exists, and wait until all answer."""
    from actors.simulator.server import simulator_base_url
    from actors.tracker import get_or_create_tracker

    sim = sim_url = None
    if any(config.simulated(p) for p in config.providers if p.enabled):
        s = config.simulator
        sim = _named(SimulatorActor, "simulator").remote(s.host, s.port, s.latency_scale)
        sim_url = ray.get(sim.url.remote())
    tracker = get_or_create_tracker(config)
    providers: dict[str, Any] = {}
    for spec in config.providers:
        if not spec.enabled:
            continue
        simulated = config.simulated(spec)
        base = simulator_base_url(spec.api, sim_url) if simulated and sim_url else None
        providers[spec.name] = _named(ProviderActor, provider_actor_name(spec.name)).remote(
            spec.model_dump(mode="json"), base, simulated)
    router = _named(RouterActor, "router", **state_actor_options(config)).remote(
        config.model_dump(mode="json"))
    ray.get([p.ready.remote() for p in providers.values()] + [router.ready.remote()])
    return Handles(router, tracker, providers, sim, sim_url)


def stop_system() -> None:
    """Kill every named actor of the system (the audit database stays on disk)."""
    names = ["router", "tracker", "simulator"]
    for info in ray.util.list_named_actors(all_namespaces=True):
        if info.get("namespace") == NAMESPACE and info["name"].startswith("provider:"):
            names.append(info["name"])
    for name in names:
        try:
            handle = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            continue
        if name == "simulator":
            try:
                ray.get(handle.stop.remote(), timeout=10)
            except Exception as exc:
                log.debug("simulator stop: %s", exc)
        ray.kill(handle, no_restart=True)


def attach_system(config: Config) -> Handles:
    """Handles to a running system, without creating anything."""
    def get(name: str) -> Any:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            raise RuntimeError(f"actor {name!r} is not running in namespace {NAMESPACE!r}; "
                               "start the router first (llm-router serve, or connect())") from None

    providers = {p.name: get(provider_actor_name(p.name)) for p in config.providers if p.enabled}
    sim = None
    sim_url = None
    try:
        sim = ray.get_actor("simulator", namespace=NAMESPACE)
        sim_url = ray.get(sim.url.remote())
    except ValueError:
        pass
    return Handles(get("router"), get("tracker"), providers, sim, sim_url)
