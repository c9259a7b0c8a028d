"""Start or attach to the actor system: simulator, tracker, provider actors, router.

All actors are named in namespace `llm-router` and detached, so a notebook or a second
process attaches to the same ones (`get_if_exists`) instead of starting a second copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray

from actors.config import Config, ConfigError, parse_config
from actors.core.errors import task_cause
from actors.shells.placement import state_actor_options
from actors.shells.provider import ProviderActor
from actors.shells.router_actor import NAMESPACE, RouterActor, provider_actor_name
from actors.stores.lease import LeaseRefused

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
    config: Config | None = None
    """The configuration in force: providers left out at start-up are disabled in it."""


def _named(cls: Any, name: str, **opts: Any) -> Any:
    return cls.options(name=name, namespace=NAMESPACE, lifetime="detached",
                       get_if_exists=True, **opts)


def start_system(config: Config) -> Handles:
    """Create whatever is missing, attach to what exists, and wait until all answer.

    Order matters: provider actors first (each reads its own key: a missing one stops
    start-up before any state is touched), then the router (which locks this instance's
    state directory), then the tracker.
    """
    from actors.core.keys import MissingKeys, left_out_warning
    from actors.shells.tracker import get_or_create_tracker

    fresh = _same_kind_as_running(config)
    sim = sim_url = None
    if config.simulate:
        s = config.simulator
        sim = _named(SimulatorActor, "simulator").remote(s.host, s.port, s.latency_scale)
        sim_url = ray.get(sim.url.remote())
    providers: dict[str, Any] = {}
    for spec in config.providers:
        if spec.enabled:
            providers[spec.name] = _named(ProviderActor, provider_actor_name(spec.name)).remote(
                spec.model_dump(mode="json"), sim_url, config.simulate)
    found = dict(zip(providers, ray.get([p.availability.remote() for p in providers.values()]),
                     strict=True))
    other = [a.provider for a in found.values() if a.simulated != config.simulate]
    if other:  # provider actors left running without a router
        raise ConfigError(_mixing(config, ", ".join(other)))
    missing = [a for a in found.values() if a.missing_key]
    for a in missing:  # an actor without its key can only fail: don't leave it running
        ray.kill(providers.pop(a.provider), no_restart=True)
    if [a for a in missing if not a.optional]:
        raise MissingKeys([a for a in missing if not a.optional])
    if missing:
        log.warning(left_out_warning(missing))
        left = {a.provider for a in missing}
        config = config.model_copy(update={"providers": [
            p.model_copy(update={"enabled": False}) if p.name in left else p
            for p in config.providers]})
    router = _named(RouterActor, "router", **state_actor_options(config)).remote(
        config.model_dump(mode="json"))
    try:
        ray.get(router.ready.remote())
    except ray.exceptions.RayTaskError as exc:  # e.g. the state directory is in use
        for h in [router, *providers.values(), *([sim] if sim is not None else [])]:
            ray.kill(h, no_restart=True)
        raise task_cause(exc) from None
    tracker = get_or_create_tracker(config)
    try:
        ray.get(tracker.ready.remote())
    except ray.exceptions.RayTaskError as exc:
        cause = task_cause(exc)
        if not isinstance(cause, LeaseRefused):
            raise
        # another system's live tracker owns the deployment's audit database: undo what
        # this call started (a router that was already running stays)
        ray.kill(tracker, no_restart=True)
        if fresh:
            ray.get(router.release_lease.remote())
            for h in [router, *providers.values(), *([sim] if sim is not None else [])]:
                ray.kill(h, no_restart=True)
        raise cause from None
    ray.get([p.ready.remote() for p in providers.values()])
    return Handles(router, tracker, providers, sim, sim_url, config)


def _mixing(config: Config, running: str) -> str:
    kind = "simulated" if not config.simulate else "real"
    return (f"a router whose providers are {kind} ({running}) is already running in namespace "
            f"{NAMESPACE!r} on this Ray cluster; this configuration asks for "
            f"{'simulated' if config.simulate else 'real'} ones. Real and simulated answers "
            "never mix: use another Ray instance (connect() without an address starts one) "
            "or stop the running router first.")


def _same_kind_as_running(config: Config) -> bool:
    """Refuse, before creating anything, to join a running system of the other kind;
    True when no router is running (this call starts the system)."""
    try:
        router = ray.get_actor("router", namespace=NAMESPACE)
    except ValueError:
        return True  # nothing running
    try:
        running = parse_config(ray.get(router.config_data.remote(), timeout=60), "router")
    except Exception as exc:  # a router that cannot answer: the checks below still hold
        log.warning("could not ask the running router for its configuration: %s", exc)
        return False
    if running.simulate != config.simulate:
        raise ConfigError(_mixing(config, ", ".join(running.names)))
    return False


LEASE_RELEASE_WAIT_S = 3.0  # a successor on this host takes a dead holder's lease anyway
SIMULATOR_STOP_WAIT_S = 10.0  # its stop escalates SIGTERM to SIGKILL after 5 s


def stop_system() -> None:
    """Kill every named actor of the system (the audit database stays on disk).

    First, at once: the leases are released (briefly: a busy actor must not hold up the
    stop) and the simulator stops its server process (given the time its stop needs to
    escalate, so no process is left behind)."""
    names = ["router", "tracker", "simulator"]
    for info in ray.util.list_named_actors(all_namespaces=True):
        if info.get("namespace") == NAMESPACE and info["name"].startswith("provider:"):
            names.append(info["name"])
    handles = {}
    for name in names:
        try:
            handles[name] = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            continue
    releases = [handles[n].release_lease.remote() for n in ("router", "tracker") if n in handles]
    sim_stop = [handles["simulator"].stop.remote()] if "simulator" in handles else []
    _await_briefly(releases, LEASE_RELEASE_WAIT_S, "lease release")
    _await_briefly(sim_stop, SIMULATOR_STOP_WAIT_S, "simulator stop")
    for handle in handles.values():
        ray.kill(handle, no_restart=True)


def _await_briefly(refs: list[Any], timeout_s: float, what: str) -> None:
    """Wait up to `timeout_s` for the calls; their failures only go to the debug log."""
    if not refs:
        return
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        try:
            ray.get(ref)
        except Exception as exc:
            log.debug("%s: %s", what, exc)


def attach_system(config: Config) -> Handles:
    """Handles to a running system, without creating anything.

    The router's own configuration says which providers are in force (some may have been
    left out at start-up) and whether they are simulated; `config` only names the system.
    """
    def get(name: str) -> Any:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            raise RuntimeError(f"actor {name!r} is not running in namespace {NAMESPACE!r}; "
                               "start the router first (llm-router serve, or connect())") from None

    router = get("router")
    running = parse_config(ray.get(router.config_data.remote()), "running router")
    providers = {p.name: get(provider_actor_name(p.name)) for p in running.providers if p.enabled}
    sim = None
    sim_url = None
    try:
        sim = ray.get_actor("simulator", namespace=NAMESPACE)
        sim_url = ray.get(sim.url.remote())
    except ValueError:
        pass
    return Handles(router, get("tracker"), providers, sim, sim_url, running)
