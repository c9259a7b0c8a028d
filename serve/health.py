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
Replacing replicas does not bring a router back; Ray restarts it. Only a router gone for
longer than three checks makes Serve start new replicas (which start the actors if
`serve.start_system` allows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: Longest the probe waits for the router's answer (a restarting router queues calls).
PROBE_TIMEOUT_S = 10.0


class RouterUnreachable(RuntimeError):
    """The replica is alive; the router it serves through did not answer the probe."""


async def router_answers(probe: Callable[[], Any], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Run the blocking `probe` (a call to the router) off the event loop; any failure of it
    becomes `RouterUnreachable`, naming what went wrong."""
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout_s)
    except Exception as exc:  # RayActorError above all: see the module docstring
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise RouterUnreachable(f"the router did not answer the health probe ({why})") from None
