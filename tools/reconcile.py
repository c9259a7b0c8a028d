"""Reconciling a chaos run: what the audit trail must say after faults and kills, and the
report table. Plain Python over the audit store interface (`actors/stores/audit_base.py`), so it
reads SQLite and PostgreSQL alike and is tested without Ray; `reconcile_run` adds what
only the live system knows, at the end of a run."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.shells.tracker import TrackerSpec
from actors.stores.audit import open_store
from actors.stores.audit_base import AuditBackend

if TYPE_CHECKING:
    from tools.chaos import Chaos


@dataclass
class AuditCheck:
    """What the audit trail alone says about a run."""

    http: Counter
    lost: int
    duplicated: int
    spend_usd: float
    problems: list[str] = field(default_factory=list)


def audit_invariants(store: AuditBackend, http_outcomes: list[tuple[str, str]], results: Any,
                     budget_usd: float | None, *, now: float | None = None) -> AuditCheck:
    """Check every request against the audit store (either backend: the queries are the
    shared SQL the store runs).

    `http_outcomes`: (request_id, outcome class) per HTTP request, "200" when answered.
    `results`: the backtest's stored bars (a DataFrame with key, request_id) or None.
    Lost = an answered HTTP request or a stored bar without exactly one terminal row, or a
    request that reached a provider (has attempt rows) without a terminal row.
    """
    problems: list[str] = []
    terminal = {r["request_id"]: int(r["n"]) for r in store.query(
        "SELECT request_id, COUNT(*) AS n FROM requests GROUP BY request_id")}
    dup_requests = sum(n - 1 for n in terminal.values() if n > 1)
    dup_attempts = int(store.query(
        "SELECT COALESCE(SUM(n - 1), 0) AS n FROM (SELECT COUNT(*) AS n FROM attempts "
        "GROUP BY request_id, execution, attempt, provider HAVING COUNT(*) > 1) AS d")[0]["n"])
    attempted = {r["request_id"] for r in store.query(
        "SELECT DISTINCT request_id FROM attempts")}
    hour = ((time.time() if now is None else now) // 3600) * 3600
    spend = float(store.query("SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM attempts "
                              "WHERE ts >= ?", (hour,))[0]["usd"])
    lost = 0
    for rid, cls in http_outcomes:
        if cls == "200" and terminal.get(rid) != 1:
            lost += 1
            problems.append(f"{rid} answered but has {terminal.get(rid, 0)} terminal rows")
    orphans = [r for r in attempted if r not in terminal]
    if orphans:
        lost += len(orphans)
        problems.append(f"{len(orphans)} requests have attempt rows but no terminal row")
    if results is not None and len(results):
        dup_bars = int(results.duplicated("key").sum())
        if dup_bars:
            problems.append(f"{dup_bars} backtest bars stored twice")
        missing = sum(1 for rid in results["request_id"].dropna() if terminal.get(rid) != 1)
        lost += missing
        if missing:
            problems.append(f"{missing} stored bars without exactly one terminal audit row")
    if dup_requests or dup_attempts:
        problems.append(f"{dup_requests + dup_attempts} duplicated audit rows")
    if budget_usd is not None and spend > budget_usd + 1e-9:
        problems.append(f"spend ${spend:.4f} above the budget ${budget_usd:.4f}")
    http = Counter(cls for _, cls in http_outcomes)
    if http.get("200", 0) == 0:
        problems.append("no HTTP request was answered at all")
    return AuditCheck(http, lost, int(dup_requests + dup_attempts), spend, problems)


@dataclass
class ChaosReport:
    seconds: float
    http: Counter
    backtest: dict[str, Any]
    lost: int
    duplicated: int
    spend_usd: float
    budget_usd: float | None
    breaker_transitions: dict[str, int]
    recovery_s: dict[str, float | None]
    router_429s: int
    events: list[tuple[float, str]]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        sent = sum(self.http.values())
        answered = self.http.get("200", 0)
        failed = {k: v for k, v in sorted(self.http.items()) if k != "200"}
        bt = self.backtest
        rows = [
            ("run length", f"{self.seconds:.0f} s"),
            ("HTTP requests sent", f"{sent}"),
            ("HTTP answered (200)", f"{answered}"),
            ("HTTP failed, by class", ", ".join(f"{k}: {v}" for k, v in failed.items()) or "0"),
            ("backtest bars done / planned", f"{bt.get('done', 0)} / {bt.get('planned', 0)}"),
            ("backtest failed, by class", ", ".join(
                f"{k}: {v}" for k, v in bt.get("failed", {}).items()) or "0"),
            ("lost (no terminal outcome or audit row)", f"{self.lost}"),
            ("duplicated audit rows", f"{self.duplicated}"),
            ("spend vs budget (this hour)", f"${self.spend_usd:.4f} vs "
             + (f"${self.budget_usd:.4f}" if self.budget_usd is not None else "no budget")),
            ("breaker transitions", ", ".join(
                f"{k}: {v}" for k, v in self.breaker_transitions.items())),
            ("recovery after kill", ", ".join(
                f"{k}: {f'{v:.1f} s' if v is not None else 'not recovered'}"
                for k, v in self.recovery_s.items())),
            ("429s caused by the router", f"{self.router_429s}"),
            ("invariants", "all hold" if self.ok else "FAILED: " + "; ".join(self.problems)),
        ]
        w = max(len(a) for a, _ in rows)
        lines = [f"| {'what'.ljust(w)} | figure |", f"|{'-' * (w + 2)}|---|"]
        lines += [f"| {a.ljust(w)} | {b} |" for a, b in rows]
        return "\n".join(lines)


def report_json(report: ChaosReport) -> str:
    return json.dumps({"ok": report.ok, "http": dict(report.http), "lost": report.lost,
                       "duplicated": report.duplicated, "spend_usd": report.spend_usd,
                       "budget_usd": report.budget_usd, "recovery_s": report.recovery_s,
                       "router_429s": report.router_429s,
                       "breaker_transitions": report.breaker_transitions,
                       "problems": report.problems, "events": report.events}, indent=2)


async def reconcile_run(run: Chaos, bt: dict[str, Any]) -> ChaosReport:
    """A finished chaos run (tools/chaos.py): the audit-trail invariants above plus what
    only the live system knows (the simulator's 429 count, recoveries, breaker transitions)."""
    llm = run.llm
    await asyncio.to_thread(llm.flush)
    results = bt["outcome"].results if "outcome" in bt else None
    store = open_store(TrackerSpec.from_config(run.config))  # SQLite or PostgreSQL
    try:
        audit = await asyncio.to_thread(audit_invariants, store, run.http_outcomes,
                                        results, run.budget_usd)
    finally:
        store.close()
    problems = audit.problems
    backtest: dict[str, Any] = {}
    if results is not None:
        out = bt["outcome"]
        ok = results["ok"].astype(bool)
        failed = results.loc[~ok, "error_class"].value_counts()
        backtest = {"planned": out.total, "done": int(ok.sum()), "stored": len(results),
                    "failed": {str(k): int(v) for k, v in failed.items()},
                    "sent": out.sent, "stopped": out.stopped}
    else:
        problems.append(f"backtest did not finish: {bt.get('error')}")
    stats = await llm.simulator.stats.remote()
    router_429s = int(stats["totals"]["rate_limited_by_limit"])
    if router_429s:
        problems.append(f"{router_429s} 429s caused by exceeding a provider's limits")
    for what, secs in run.recovery.items():
        if secs is None:
            problems.append(f"{what} did not recover")
    status = await asyncio.to_thread(llm.status)
    transitions = {str(k): int(v or 0) for k, v in status["transitions"].items()}
    return ChaosReport(
        seconds=time.monotonic() - run.t0, http=audit.http, backtest=backtest,
        lost=audit.lost, duplicated=audit.duplicated, spend_usd=audit.spend_usd,
        budget_usd=run.budget_usd, breaker_transitions=transitions,
        recovery_s=dict(run.recovery), router_429s=router_429s, events=run.events,
        problems=problems[:20])
