"""Resuming after a kill: what became of the requests that were in flight.

The journal names every request id sent, before it was sent. For a key with no stored
result, the tracker's audit trail (`RouterClient.audit`) tells what happened to its last
request: answered (the answer text is in the attempt row, so the result is rebuilt without
paying again), failed for good (recorded as such), or nothing recorded / failed without
spending (sent again, under a new id `…~<n>` so the audit trail never mixes two requests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.errors import RETRYABLE, ErrorClass

#: Failures that say nothing about the bar: retried (if nothing was spent on them).
TRANSIENT: frozenset[str] = frozenset(
    c.value for c in RETRYABLE | {ErrorClass.NO_PROVIDER, ErrorClass.BREAKER_OPEN,
                                  ErrorClass.INTERNAL, ErrorClass.DEADLINE,
                                  ErrorClass.BUDGET_EXCEEDED})


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
    if req["ok"]:
        answer = next((a for a in reversed(attempts) if a["ok"]), None)
        return Prior(request_id, final=True, next_gen=nxt, ok=True, request=req,
                     text=answer.get("response") if answer else None,
                     latency_s=answer.get("latency_s") if answer else None, tried=tried)
    spent = float(req.get("cost_usd") or 0.0) > 0
    final = spent or (req.get("error_class") not in TRANSIENT)
    return Prior(request_id, final=final, next_gen=nxt, ok=False, request=req, tried=tried)


def lookup(client: Any, pending: dict[str, list[str]]) -> dict[str, Prior]:
    """Classify the last request of every pending key (sequential audit calls; the number
    of keys is bounded by the in-flight window plus unflushed results)."""
    out: dict[str, Prior] = {}
    for key, rids in pending.items():
        rid = rids[-1]
        try:
            rows = client.audit(rid)
        except KeyError:
            rows = None
        out[key] = classify(rid, rows)
    return out
