"""Reconciling a chaos run: what the audit trail must say after faults and kills, and the
report table. Plain Python over the audit store interface (`actors/audit_base.py`), so it
reads SQLite and PostgreSQL alike and is tested without Ray."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from actors.audit_base import AuditBackend


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
