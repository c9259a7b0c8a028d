"""A backtest run's rows: what each routed outcome (an answer, a failure, one rebuilt from
the audit trail) becomes in the results, and the run's counters. The runner (runner.py) and
batch mode (batch_run.py) send the requests; both record through `RunRows`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from actors.backtest.fanout import RateShare
from actors.backtest.feedback import FeedbackGate, FeedbackSender
from actors.backtest.outcome import score
from actors.backtest.plan import BarJob
from actors.backtest.prepare import Prepared
from actors.backtest.progress import Progress
from actors.backtest.recover import Prior
from actors.backtest.store import RunStore
from actors.core.errors import ErrorClass
from actors.routing.route import RouteResult, RoutingError
from prompts import OutputError, get_task, parse_output

#: Failures left undone for a re-run rather than retried or recorded.
UNFINISHED = frozenset({ErrorClass.CACHE_MISS, ErrorClass.BUDGET_EXCEEDED})


@dataclass
class RunRows:
    """A run's state and how each outcome becomes a stored row (the requests are sent by
    runner._Run, batch_run.BatchRun)."""

    prep: Prepared
    client: Any
    store: RunStore
    progress: Progress
    gate: FeedbackGate
    sender: FeedbackSender | None
    window: int
    assigner: RateShare | None
    router: str = ""
    sent: int = 0
    recovered: int = 0
    new_rows: int = 0
    spend: float = 0.0
    cached: int = 0
    saved: float = 0.0
    interrupted_inflight: int = 0  # still unanswered when the grace period ended
    batch_jobs: int = 0  # batch mode: jobs submitted by this invocation
    stopped: str | None = None
    failures: Counter[str] = field(default_factory=Counter)

    # -- rows ----------------------------------------------------------------------------

    def _row(self, job: BarJob, policy: str, rid: str, **kw: Any) -> dict[str, Any]:
        parsed = kw.pop("parsed", None)
        sc = score(job.task, parsed, fwd=job.fwd_return, adverse=job.adverse, close=job.close,
                   flat_threshold=self.prep.spec.flat_threshold) if kw.get("ok") else None
        parsed = parsed or {}
        return {
            "run_id": self.prep.run_id, "key": job.key(policy), "request_id": rid,
            "symbol": job.symbol, "timeframe": job.timeframe,
            "ts": _naive_utc(job.ts),
            "bar": job.bar, "task": job.task, "policy": policy, "regime": job.regime,
            "close": job.close, "fwd_return": job.fwd_return,
            "direction": parsed.get("direction"), "confidence": _num(parsed.get("confidence")),
            "risk_score": _num(parsed.get("risk_score")),
            "stop_distance": _num(parsed.get("stop_distance")),
            "answer": json.dumps(parsed) if parsed else None, "score": sc,
            "done_at": time.time(), "planner_node": job.node, "cached": False,
            "saved_usd": 0.0, **kw,
        }

    def _finish(self, job: BarJob, policy: str, row: dict[str, Any], paid: float) -> None:
        self.store.add(row)
        self.new_rows += 1
        self.spend += paid
        if not row["ok"]:
            self.failures[row["error_class"] or "unknown"] += 1
        self.progress.update(bool(row["ok"]), paid, row["error_class"])
        if row["score"] is not None and self.sender is not None:
            for rid, s in self.gate.hold(job.series, job.bar, row["request_id"], row["score"]):
                self.sender.put(rid, s)

    def from_result(self, job: BarJob, policy: str, r: RouteResult) -> None:
        ok_att = [a for a in r.trace.attempts if a.ok]
        row = self._row(job, policy, r.request_id, ok=True, error_class=None, error=None,
                        provider=r.provider, model=r.model, tried=_tried(r.trace.attempts),
                        attempts=len(r.trace.attempts), input_tokens=r.input_tokens,
                        output_tokens=r.output_tokens, cost_usd=r.cost_usd,
                        latency_s=r.latency_s,
                        attempt_latency_s=ok_att[-1].latency_s if ok_att else None,
                        recovered=False, parsed=r.parsed, cached=r.trace.cached,
                        saved_usd=r.trace.saved_usd)
        if r.trace.cached:
            self.cached += 1
            self.saved += r.trace.saved_usd
            self.progress.hit(r.trace.saved_usd)
        self._finish(job, policy, row, r.cost_usd)

    def from_error(self, job: BarJob, policy: str, rid: str, exc: RoutingError) -> None:
        t = exc.trace
        row = self._row(job, policy, rid, ok=False, error_class=exc.error_class.value,
                        error=str(exc.message)[:500], provider=None, model=None,
                        tried=_tried(t.attempts), attempts=len(t.attempts),
                        input_tokens=t.input_tokens, output_tokens=t.output_tokens,
                        cost_usd=t.cost_usd, latency_s=t.latency_s, attempt_latency_s=None,
                        recovered=False)
        self._finish(job, policy, row, t.cost_usd)

    def from_prior(self, job: BarJob, policy: str, p: Prior) -> None:
        """A request answered (or failed for good) before a kill: rebuilt, not paid again."""
        req = p.request or {}
        parsed = None
        error_class, error = req.get("error_class"), req.get("error")
        if p.ok:
            try:
                parsed = parse_output(p.text or "", get_task(job.task).output).model_dump()
            except OutputError as exc:
                error_class, error = "unrecoverable", f"answer not in the audit trail: {exc}"
        ok = p.ok and parsed is not None
        row = self._row(job, policy, p.request_id, ok=ok, error_class=None if ok else error_class,
                        error=None if ok else error, provider=req.get("provider") if ok else None,
                        model=req.get("model"), tried=p.tried, attempts=req.get("attempts"),
                        input_tokens=req.get("input_tokens"),
                        output_tokens=req.get("output_tokens"), cost_usd=req.get("cost_usd"),
                        latency_s=req.get("latency_s"), attempt_latency_s=p.latency_s,
                        recovered=True,
                        parsed=parsed)
        self.recovered += 1
        self._finish(job, policy, row, 0.0)

    def failed(self, job: BarJob, policy: str, rid: str, exc: RoutingError) -> None:
        """A request that failed for good: recorded, or left undone for a re-run (cache
        miss with --cache-only; the budget ran out before it was paid)."""
        if exc.error_class == ErrorClass.CACHE_MISS:
            self.failures["cache_miss (unfinished)"] += 1
            self.progress.note("cache_miss (unfinished)")
        elif exc.error_class == ErrorClass.BUDGET_EXCEEDED and not exc.trace.cost_usd:
            self.stopped = self.stopped or f"budget exceeded: {exc.message[:200]}"
            self.failures["budget_exceeded (unfinished)"] += 1
            self.progress.note("budget_exceeded (unfinished)")
        else:
            self.from_error(job, policy, rid, exc)


def _naive_utc(ts: Any) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t if t.tz is None else t.tz_convert("UTC").tz_localize(None)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _tried(attempts: list[Any]) -> str:
    return ",".join(f"{a.provider}:{'ok' if a.ok else a.error_class}" for a in attempts)
