"""The backtest runner: bars → contexts → routed requests → validated signals → Parquet,
with outcome feedback, a progress line and a report at the end.

    from actors import connect
    from actors.backtest import BacktestSpec, SeriesSpec, run_backtest
    llm = connect()
    out = run_backtest(llm, BacktestSpec(series=[SeriesSpec(source="sample:sp500")],
                                          start="2007-01-01", limit=300,
                                          policies=["accuracy-first", "cost-aware"]))
    out.results, out.report.files

Every request goes through `RouterClient.aroute` with `priority="batch"`: the same router,
breakers, budgets and rate limits as live traffic, behind it in the limiters' queues.
Order of work: inputs are checked and the run directory claimed (a run id with other
parameters is refused) before the router is asked anything; then chunks of bars are planned
(plan.py: Ray tasks over the nodes, or a driver thread on one node), each (bar, task) is
expanded into one request per policy, and at most `window` requests are in flight
(fanout.py; with `assign: rate-share` also pinned to providers by rpm). Results are buffered and written as Parquet
parts; ids are deterministic per (run, policy, task, symbol, timeframe, bar), so a re-run
skips stored bars and rebuilds answered-but-unstored ones from the audit trail (recover.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from tenacity import RetryCallState

from actors.backtest import report as reports
from actors.backtest.fanout import RateShare, window_size
from actors.backtest.feedback import FeedbackGate, FeedbackSender, router_send
from actors.backtest.plan import BarJob, Planner
from actors.backtest.prepare import Prepared, prepare, request_id
from actors.backtest.progress import Progress
from actors.backtest.recover import TRANSIENT, Prior, lookup, router_id
from actors.backtest.rows import UNFINISHED, RunRows
from actors.backtest.spec import BacktestError, BacktestSpec
from actors.backtest.store import RunStore
from actors.core.retry import retrying_request
from actors.routing.route import RouteResult, RoutingError

log = logging.getLogger(__name__)


@dataclass
class BacktestOutcome:
    run_id: str
    run_dir: Path
    # not in the repr: asyncio.run reprs the finished task (Python 3.11's signal-handler
    # check formats it), and a DataFrame's repr took ~0.2 s of a one-second re-run
    results: pd.DataFrame = field(repr=False)
    total: int
    skipped: int  # already stored when this invocation started
    sent: int  # requests sent by this invocation (retries included)
    recovered: int  # rebuilt from the audit trail, not paid again
    failures: dict[str, int]
    spend_usd: float  # by this invocation
    wall_s: float
    window: int
    nodes: list[str]
    feedback_sent: int
    stopped: str | None = None
    report: reports.Report | None = field(default=None, repr=False)
    text: str = field(default="", repr=False)
    cached: int = 0  # answered from the response cache by this invocation (not paid)
    saved_usd: float = 0.0  # what those answers cost when they were paid

    @property
    def finished(self) -> int:
        return len(self.results)

    @property
    def complete(self) -> bool:
        return self.finished == self.total


class _Run(RunRows):
    """Sends a run's requests: a window of them in flight, each retried as its failure allows."""

    # -- requests ------------------------------------------------------------------------

    async def one(self, job: BarJob, policy: str, gen: int, slots: asyncio.Semaphore,
                  pin: tuple[str | None, list[str]] | None = None) -> None:
        """Route one request (`pin`: the providers the router already chose, in order); a
        transient failure that cost nothing is sent again under a new id (`bar_retries`)."""
        sent: list[str] = []  # the request ids sent, one per attempt
        try:
            async for attempt in retrying_request(self.prep.spec.bar_retries, self._worth_retry,
                                                  self._retried):
                with attempt:
                    res = await self._send(job, policy, gen + len(sent),
                                           None if sent else pin, sent)
        except RoutingError as exc:
            self.failed(job, policy, sent[-1], exc)
        else:
            self.from_result(job, policy, res)
        finally:
            slots.release()

    async def _send(self, job: BarJob, policy: str, gen: int,
                    pin: tuple[str | None, list[str]] | None, sent: list[str]) -> RouteResult:
        rid = request_id(self.prep.run_id, job, policy, gen)
        update: dict[str, Any] = {"policy": policy, "request_id": rid}
        if pin is not None:
            update["provider"], update["fallbacks"] = pin
        elif self.assigner is not None:
            update["provider"], update["fallbacks"] = self.assigner.next()
        req = job.request.model_copy(update=update)
        self.store.dispatched(job.key(policy), rid, self.router)
        self.sent += 1
        sent.append(rid)
        try:
            return await self.client.aroute(req)
        finally:
            if self.assigner is not None:
                self.assigner.done(update["provider"])

    def _worth_retry(self, exc: BaseException) -> bool:
        """Transient, nothing paid, and the run goes on (a cache-only miss and a budget
        refusal are left undone at once: `failed`)."""
        return (isinstance(exc, RoutingError) and exc.error_class.value in TRANSIENT
                and exc.error_class not in UNFINISHED and not exc.trace.cost_usd
                and not self.stopped)

    def _retried(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        what = f"{exc.error_class.value if isinstance(exc, RoutingError) else 'error'} (retried)"
        self.failures[what] += 1
        self.progress.note(what)

    async def settle(self, inflight: set[asyncio.Task[None]]) -> None:
        """Wait up to `grace_s` for the requests in flight: their answers are being paid for,
        so they are stored now rather than sent again by the resume. Those still running
        after that are journaled; the resume asks the audit trail (and, re-sent, the
        response cache) for their outcome before paying for them again."""
        if not inflight:
            return
        n = len(inflight)
        log.warning("interrupted: sending nothing more; waiting up to %.0f s for %d requests "
                    "in flight", self.prep.spec.grace_s, n)
        try:
            await asyncio.wait(set(inflight), timeout=self.prep.spec.grace_s)
        except asyncio.CancelledError:  # asked twice: stop waiting
            pass
        self.interrupted_inflight = sum(1 for t in inflight if not t.done())

    async def watch_breakers(self, every_s: float = 1.0) -> None:
        """rate-share: keep new bars off providers whose breaker is open."""
        while self.assigner is not None:
            try:
                st = await asyncio.to_thread(self.client.status)
                self.assigner.set_down(set(st.index[st["state"] == "open"]))
            except Exception as exc:  # advisory only
                log.debug("status for rate-share failed: %s", exc)
            await asyncio.sleep(every_s)

    async def dispatch(self, planner: Planner, finished: set[str],
                       priors: dict[str, Prior]) -> None:
        slots = asyncio.Semaphore(self.window)
        inflight: set[asyncio.Task[None]] = set()
        errors: list[BaseException] = []
        watcher = asyncio.ensure_future(self.watch_breakers()) if self.assigner else None

        def done(t: asyncio.Task[None]) -> None:
            inflight.discard(t)
            if not t.cancelled() and t.exception() is not None:
                errors.append(t.exception())

        try:
            async for job in planner.jobs():
                if errors:
                    raise errors[0]
                for policy in self.prep.spec.policies:
                    key = job.key(policy)
                    if key in finished or self.stopped:
                        continue
                    prior = priors.pop(key, None)
                    if prior is not None and prior.final:
                        self.from_prior(job, policy, prior)
                        continue
                    await slots.acquire()
                    if errors:
                        raise errors[0]
                    t = asyncio.ensure_future(
                        self.one(job, policy, prior.next_gen if prior else 1, slots))
                    inflight.add(t)
                    t.add_done_callback(done)
                if self.sender is not None:
                    for rid, s in self.gate.advance(job.series, job.bar):
                        self.sender.put(rid, s)
                if self.store.due(self.prep.spec.part_rows):
                    self.store.flush()
                if self.stopped:
                    break
            while inflight:
                await asyncio.wait(set(inflight), timeout=1.0,
                                   return_when=asyncio.FIRST_EXCEPTION)
                if errors:
                    raise errors[0]
                if self.store.due(self.prep.spec.part_rows):
                    self.store.flush()
        except asyncio.CancelledError:  # Ctrl-C: stop sending; keep what is already paid for
            self.stopped = "interrupted"
            await self.settle(inflight)
            raise
        finally:
            for t in inflight:
                t.cancel()
            if watcher is not None:
                watcher.cancel()


def _observed_latency(client: Any) -> float | None:
    try:
        st = client.status()
        p95 = st["p95_s"].dropna()
        return float(p95.max()) if len(p95) else None
    except Exception:  # status is advisory here
        return None


async def arun_backtest(client: Any, spec: BacktestSpec | Prepared, *, progress: bool = True,
                        stream: TextIO | None = None, write_report: bool = True,
                        ) -> BacktestOutcome:
    """Run (or resume) a backtest; the async twin of `run_backtest`."""
    prep = spec if isinstance(spec, Prepared) else prepare(spec, client.config.regime)
    if prep.rules != client.config.regime:
        raise BacktestError("the run was prepared under other regime rules than the router's "
                            "config sets: prepare(spec, client.config.regime)")
    spec = prep.spec
    store = RunStore(spec.runs_dir, prep.run_id)
    store.claim(prep.defining)
    stored = store.load()
    finished = set(stored["key"])
    journal, fed = store.read_journal()
    priors = await asyncio.to_thread(
        lookup, client, {k: r for k, r in journal.items() if k not in finished}, spec.timeout)
    window = spec.inflight or window_size(client.config,
                                          await asyncio.to_thread(_observed_latency, client))
    bar = Progress(prep.total, already=len(finished), stream=stream, enabled=progress)
    gate = FeedbackGate(spec.horizon)
    sender = FeedbackSender(router_send(client), store.feedback_sent) if spec.feedback else None
    run = _Run(prep, client, store, bar, gate, sender, window,
               RateShare(client.config) if spec.assign == "rate-share" else None,
               router=router_id(client))
    if sender is not None:  # scores stored earlier whose feedback never got through
        todo = stored[stored["score"].notna() & ~stored["request_id"].isin(fed)]
        for r in todo.itertuples():
            gate.hold(f"{r.symbol} {r.timeframe}", int(r.bar), r.request_id, float(r.score))
    route = {"max_tokens": spec.max_tokens, "timeout": spec.timeout, "priority": "batch",
             "context": {"backtest": prep.run_id}, "cache": spec.cache}
    planner = Planner(prep.series, spec.tasks, spec.horizon, client.config, route,
                      spec.chunk_bars, where=spec.planning)
    t0 = time.monotonic()
    try:
        if spec.batch:
            await _batched(run, client, planner, finished, priors)
        else:
            await run.dispatch(planner, finished, priors)
    except (asyncio.CancelledError, KeyboardInterrupt):
        store.flush()  # keep what is done; the rest is rebuilt or re-sent on resume
        store.close()
        raise
    store.flush()
    if sender is not None:
        for rid, s in gate.drain():
            sender.put(rid, s)
        await sender.close()
    wall = time.monotonic() - t0
    bar.show(final=True)
    store.close()
    results = store.load()
    out = BacktestOutcome(prep.run_id, store.dir, results, prep.total, len(finished), run.sent,
                          run.recovered, dict(run.failures), run.spend, wall, window,
                          sorted(planner.nodes), sender.sent if sender else 0, run.stopped,
                          cached=run.cached, saved_usd=run.saved)
    if write_report:
        meta = {"run_id": prep.run_id, "bars x tasks x policies": prep.total,
                "results": len(results), "series": ", ".join(s.label() for s in prep.series),
                "tasks": ", ".join(spec.tasks), "policies": ", ".join(spec.policies),
                "horizon (bars)": spec.horizon, "assign": spec.assign,
                "sent this run": run.sent, "recovered from audit": run.recovered,
                "spend this run (USD)": round(run.spend, 6),
                "answered from the response cache": run.cached,
                "saved by the cache (USD)": round(run.saved, 6), "wall (s)": round(wall, 1),
                "in-flight window": window, "planner nodes": len(planner.nodes)}
        if spec.batch:
            meta["batch jobs submitted"] = run.batch_jobs
        if run.stopped:
            meta["stopped"] = run.stopped
        rep = reports.build(results, list(client.config.names), meta)
        reports.write(rep, store.dir, results)
        out.report = rep
        out.text = reports.text(rep)
    return out


async def _batched(run: _Run, client: Any, planner: Planner, finished: set[str],
                   priors: dict[str, Prior]) -> None:
    """Batch mode (actors/backtest/batch_run.py)."""
    from actors.backtest.batch_setup import batch_run, close

    b = batch_run(run, client)
    try:
        await b.dispatch(planner, finished, priors)
    finally:
        run.batch_jobs = b.jobs
        await close(b)


def run_backtest(client: Any, spec: BacktestSpec | Prepared, **kw: Any) -> BacktestOutcome:
    """Run (or resume) a backtest to the end and write its report (see module docstring)."""
    return asyncio.run(arun_backtest(client, spec, **kw))
