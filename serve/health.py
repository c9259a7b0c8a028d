"""Serve's health probe of a replica: healthy while the router answers it — and a router
that does not answer is the replica's *failure*, never its *crash*.

Serve's controller tells the two apart by the exception's class: a `RayActorError` from the
probe means "the replica's actor died", and the replica is stopped at once; anything else
is a failed check, and only three in a row (`health_check_period_s` apart) stop it. A call
to a router that was killed and is restarting raises `RayActorError` too — and Ray hands
it to the controller as the replica's own (`RayTaskError` is made an instance of its
cause's class). So a router restart made Serve stop every healthy replica at once: in the
PostgreSQL chaos run the replica that survived the replica kill was stopped 4 s later,
and HTTP had no replica at all until the replacements started (13–19 s at load ~40).
Replacing replicas does not bring a router back; Ray restarts it. So a router Ray is
restarting (the GCS says RESTARTING, or not created yet) leaves the replica healthy — at
load ~40 a router restart took 34 s, three failed checks, and Serve replaced the replica
that had survived for nothing. A router that is dead for good, or alive and not answering,
fails the check; three such failures make Serve start new replicas (which start the actors
if `serve.start_system` allows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Longest the probe waits for the router's answer (a busy or hung router may not answer).
PROBE_TIMEOUT_S = 10.0
#: GCS actor states in which Ray is still bringing the actor (back) up.
COMING_UP = frozenset({"RESTARTING", "PENDING_CREATION", "DEPENDENCIES_UNREADY"})


class RouterUnreachable(RuntimeError):
    """The replica is alive; the router it serves through did not answer the probe."""


def coming_up(handle: Any) -> bool:
    """Whether Ray is restarting (or still creating) the actor behind `handle`, from the GCS
    actor table; False whenever that cannot be told (the check then fails as it would)."""
    try:
        from ray._private import state  # the GCS actor table; no dashboard needed

        info = state.actors(actor_id=handle._actor_id.hex())
    except Exception as exc:
        log.debug("cannot read the router's actor state: %s", exc)
        return False
    return isinstance(info, dict) and info.get("State") in COMING_UP


async def router_answers(probe: Callable[[], Any], restarting: Callable[[], bool] = lambda: False,
                         timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Run the blocking `probe` (a call to the router) off the event loop. If it fails while
    `restarting()` says Ray is bringing the router back, the replica is healthy; any other
    failure becomes `RouterUnreachable`, naming what went wrong."""
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout_s)
    except Exception as exc:  # RayActorError above all: see the module docstring
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if await asyncio.to_thread(restarting):
            log.info("health probe: the router is restarting (%s); this replica stays", why)
            return
        raise RouterUnreachable(f"the router did not answer the health probe ({why})") from None
