"""Resuming after a kill: what became of the requests that were in flight.

The journal names every request id sent, before it was sent. For a key with no stored
result, the tracker's audit trail (`RouterClient.audit`) tells what happened to its last
request (waiting for it first if it may still be running, see `lookup`): answered (the answer text is in the attempt row, so the result is rebuilt without
paying again), failed for good (recorded as such), or nothing recorded / failed without
spending (sent again, under a new id `…~<n>` so the audit trail never mixes two requests).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from actors.backtest.store import Sent
from actors.core.errors import RETRYABLE, ErrorClass
from actors.stores.audit import UNKNOWN_OUTCOME

#: Failures that say nothing about the bar: retried (if nothing was spent on them). The
#: "unknown_outcome" placeholder is what a caller records when its router died mid-request.
TRANSIENT: frozenset[str] = frozenset(
    c.value for c in RETRYABLE | {ErrorClass.NO_PROVIDER, ErrorClass.BREAKER_OPEN,
                                  ErrorClass.INTERNAL, ErrorClass.DEADLINE,
                                  ErrorClass.BUDGET_EXCEEDED, ErrorClass.CACHE_MISS}
    ) | {UNKNOWN_OUTCOME}


def generation(request_id: str) -> int:
    head, sep, tail = request_id.rpartition("~")
    return int(tail) if sep and tail.isdigit() else 1


@dataclass(frozen=True)
class Prior:
    """What the audit trail says about a key's last request."""

    request_id: str
    final: bool  # True: record it from here, send nothing
    next_gen: int  # generation to send under when not final
    ok: bool = False
    request: dict[str, Any] | None = None  # the audit's request row
    text: str | None = None  # the answering attempt's response text
    latency_s: float | None = None  # the answering attempt's
    tried: str = ""


def classify(request_id: str, rows: list[dict[str, Any]] | None) -> Prior:
    """Decide from a request's audit rows (None: the tracker never heard of it)."""
    nxt = generation(request_id) + 1
    if not rows:
        return Prior(request_id, final=False, next_gen=nxt)
    attempts = [r for r in rows if r.get("kind") == "attempt"]
    req = next((r for r in rows if r.get("kind") == "request"), None)
    tried = ",".join(f"{a['provider']}:{'ok' if a['ok'] else a.get('error_class')}"
                     for a in attempts)
    if req is None:  # cut off mid-request: its answer, if any, never reached us
        return Prior(request_id, final=False, next_gen=nxt, tried=tried)
    if req["ok"] and req.get("cached"):  # its answer is in the response cache: ask again, free
        return Prior(request_id, final=False, next_gen=nxt, tried=tried)
    if req["ok"]:
        answer = next((a for a in reversed(attempts) if a["ok"]), None)
        return Prior(request_id, final=True, next_gen=nxt, ok=True, request=req,
                     text=answer.get("response") if answer else None,
                     latency_s=answer.get("latency_s") if answer else None, tried=tried)
    spent = float(req.get("cost_usd") or 0.0) > 0
    final = spent or (req.get("error_class") not in TRANSIENT)
    return Prior(request_id, final=final, next_gen=nxt, ok=False, request=req, tried=tried)


def router_id(client: Any) -> str:
    """Identity of the router actor: requests sent to another one cannot still be running."""
    actor_id = getattr(client.handles.router, "_actor_id", None)
    return actor_id.hex() if actor_id is not None else ""


#: A request the router is not working on, sent longer ago than this, never reached it (the
#: driver that sent it is gone; nothing of it can still be on the way).
TRANSIT_S = 10.0


def _running(client: Any, request_ids: list[str]) -> set[str] | None:
    """Request ids the router is routing now; None when it can't say (assume any may run)."""
    try:
        return set(client.active(request_ids))
    except Exception:
        return None


def lookup(client: Any, pending: dict[str, list[Sent]], timeout_s: float,
           poll_s: float = 0.5, clock=time.time, sleep=time.sleep) -> dict[str, Prior]:
    """Classify the last request of every pending key.

    A request the tracker never heard of may still be queued in the *same* router (the
    driver died, the cluster did not): it is waited for — until recorded, or its deadline
    (sent + `timeout_s`) has passed — rather than sent again and paid twice. One sent to a
    router that no longer exists (the usual case: the embedded cluster died with the
    driver) is known lost at once, and so is one the router says it is not working on,
    sent more than TRANSIT_S ago (asked before the audit lookup, which flushes the router's
    records: one that finished in between shows up there). The number of keys is bounded
    by the in-flight window plus unflushed results.
    """
    me = router_id(client)
    out: dict[str, Prior] = {}
    waiting: dict[str, Sent] = {k: sent[-1] for k, sent in pending.items()}
    while waiting:
        running = _running(client, [s.request_id for s in waiting.values()])
        for key, s in list(waiting.items()):
            try:
                rows = client.audit(s.request_id)
            except KeyError:
                rows = None
            in_router = (running is None or s.request_id in running
                         or clock() < s.at + TRANSIT_S)
            may_run = (bool(me) and s.router == me and clock() < s.at + timeout_s + 5.0
                       and in_router)
            if rows is not None or not may_run:
                out[key] = classify(s.request_id, rows)
                del waiting[key]
        if waiting:
            sleep(poll_s)
    return out
