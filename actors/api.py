"""The Python API for notebooks and scripts: `connect()` and the client it returns.

    from actors import connect
    llm = connect()                      # embedded local Ray; real providers (keys from env)
    llm = connect(simulate=True)         # or: every provider answered by the built-in simulator
    r = llm.complete("Is SPY bullish?", policy="cost-aware", context={"regime": "bull"})
    r.text, r.cost_usd, r.trace.chosen
    llm.status(); llm.costs("hour"); llm.performance()
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

from actors.caller.client import MessagesLike, RouterClient, as_messages
from actors.config import Config, load_config, parse_config
from actors.core.keys import SIMULATED_WARNING
from actors.shells.router_actor import NAMESPACE
from actors.shells.system import start_system

__all__ = ["MessagesLike", "RouterClient", "as_messages", "attach", "connect", "describe_lines"]
log = logging.getLogger("actors")


def _config(config: Config | dict[str, Any] | str | os.PathLike[str] | None) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def connect(
    address: str | None = None,
    config: Config | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    simulate: bool = False,
    **ray_init: Any,
) -> RouterClient:
    """Start or join Ray and the router's actors; return a client.

    address: None = $RAY_ADDRESS if set (as in a Ray job), else a new embedded local Ray
    instance; "auto" = the running cluster on this machine; "ray://host:10001" = a Ray
    client connection. config: a path, a dict, a Config or None (--config /
    $LLM_ROUTER_CONFIG / the shipped configs/providers.yaml). Other keywords go to
    `ray.init`: a new local instance starts with its dashboard unless
    `include_dashboard=False`.

    Providers are real unless `simulate=True` (or `simulator.mode: always`): then every
    one is answered by the built-in simulator and every answer says so. Without it, a
    provider whose key variable is unset stops start-up with an error naming it.
    """
    cfg = _config(config)
    if simulate:
        cfg = cfg.simulating()
    if not ray.is_initialized():
        ray_init.setdefault("namespace", NAMESPACE)
        ray_init.setdefault("log_to_driver", False)
        if address is None:
            # Not Ray's own default, which joins whatever `ray start` last ran on this
            # machine (and hangs if that cluster has gone without `ray stop`).
            address = os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":  # the dashboard shows the named actors; off: include_dashboard=False
            ray_init.setdefault("include_dashboard", True)
        else:  # a running cluster has (or lacks) its dashboard already
            ray_init.pop("include_dashboard", None)
        ray.init(address=address, **ray_init)
    handles = start_system(cfg)
    client = RouterClient(handles, handles.config or cfg)
    about = client.describe()
    if about["simulated"]:
        log.warning(SIMULATED_WARNING)
    log.log(logging.WARNING if "override" in about["budgets"] else logging.INFO,
            "llm-router state %s; %s", about["state_dir"], about["budgets"])
    return client


def describe_lines(about: dict[str, Any]) -> list[str]:
    """What a command prints at start-up about the instance it started or joined."""
    lines = [f"state directory: {about['state_dir']}", about["budgets"]]
    if about["simulated"]:
        lines.append(SIMULATED_WARNING)
    cache = about.get("cache")
    if cache:
        lines.append(f"response cache: {cache['path']} ({cache['entries']} answers)")
    return lines


def attach(config: Config | dict[str, Any] | str | os.PathLike[str] | None = None) -> RouterClient:
    """A client for actors that already run (inside a Serve replica or a Ray task).

    Needs Ray initialized (it is, inside any Ray worker); raises a clear error if the
    router has not been started with `connect()` / `llm-router serve`.
    """
    from actors.shells.system import attach_system

    handles = attach_system(_config(config))
    assert handles.config is not None
    return RouterClient(handles, handles.config)
