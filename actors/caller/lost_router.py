"""A caller whose router died holding its request: the outcome is unknown.

Both ways of asking (`complete()` blocking, `aroute()` / `acomplete()` async) fail the same
way: a `RoutingError` of class `internal` saying the outcome is unknown, after leaving a
terminal `unknown_outcome` audit row, so no request is without an outcome. If the router
had finished the request, its journal replays the real row, which replaces the placeholder
(README: "a caller whose router died mid-request leaves an `unknown_outcome` row").
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from actors.core.errors import ErrorClass
from actors.core.records import RequestRecord
from actors.core.retry import retry_hop, retry_hop_sync
from actors.routing.route import RouteRequest, RoutingError, RoutingTrace
from actors.stores.audit import UNKNOWN_OUTCOME

log = logging.getLogger(__name__)
#: Tries of the placeholder row (the tracker may be restarting too), 0.5 s apart.
TRIES, PAUSE_S = 3, 0.5


def lost(req: RouteRequest, why: str) -> tuple[RoutingError, RequestRecord]:
    """The caller's error and the placeholder row for a request whose router is gone."""
    message = (f"{why}; request {req.request_id} has an unknown outcome "
               "(its audit rows say what happened)")
    error = RoutingError(ErrorClass.INTERNAL, message,
                         RoutingTrace(request_id=req.request_id or "", policy=req.policy or ""))
    row = RequestRecord(request_id=req.request_id or "", ts=time.time(),
                        policy=req.policy or "", context=req.context, ok=False,
                        error_class=UNKNOWN_OUTCOME, error=message[:500], attempts=0)
    return error, row


def actor_lost(exc: ray.exceptions.RayActorError) -> str:
    """How a dead or unreachable router reads in the error (no Ray traceback)."""
    return f"router unavailable: {type(exc).__name__}"


async def record(tracker: Any, row: RequestRecord) -> None:
    """The placeholder row to the tracker; a failure is logged, never raised over the
    caller's own error."""
    async def send() -> None:
        await tracker.record.remote([row])

    try:
        await retry_hop(send, tries=TRIES, base_s=PAUSE_S, max_s=PAUSE_S)
    except Exception as exc:
        log.warning("could not record the unknown outcome of %s: %s", row.request_id, exc)


def record_sync(tracker: Any, row: RequestRecord) -> None:
    """The blocking twin of `record`."""
    try:
        retry_hop_sync(lambda: ray.get(tracker.record.remote([row]), timeout=10.0),
                       tries=TRIES, base_s=PAUSE_S, max_s=PAUSE_S)
    except Exception as exc:
        log.warning("could not record the unknown outcome of %s: %s", row.request_id, exc)
