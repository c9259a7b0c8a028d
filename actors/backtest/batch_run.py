"""Backtest batch mode (`llm-router backtest --batch`): bars go to the providers' batch APIs.

Per request, the router decides as for a synchronous call (actors/routing/batch_route.py: cache,
policy, budget reserved at the batch price). Requests for a provider with a batch API are
gathered into jobs of up to `batch_size` items; the others are sent synchronously at once.
Each job is journaled before it is submitted and its id after (batch_journal.py; the
bars' request ids also go to the run journal, so `recover.lookup` knows them), then polled
every `batch_poll_s`; its items' outcomes are recorded by the router like synchronous
answers and stored as rows in the same Parquet parts.

A failed item is classified by the same client code as a synchronous answer and then goes
into a later batch, synchronously, or is recorded as failed: the rule is batch_rule.py.
Every retry is a new request id (`…~<n>`), as in synchronous mode.

Resuming (the same run id): an intent with no job id is looked for by its tag — found,
it is polled; provably never submitted, it is submitted now; bars already recorded (stored,
or in the audit trail) are never submitted again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors.backtest.batch_journal import (
    BatchJournal,
    Intent,
    ItemRef,
    Waiting,
    custom_id,
    prompt_of,
    run_tag,
    still_open,
)
from actors.backtest.batch_rule import Next, next_step
from actors.backtest.plan import BarJob, Planner
from actors.backtest.recover import Prior, generation
from actors.clients.batch import BatchApi, ItemOutcome
from actors.core.errors import ErrorClass, ProviderError
from actors.routing.batch_route import BatchPlan, BatchSettle, PlanKind
from actors.routing.route import RouteRequest, RouteResult, RoutingError

log = logging.getLogger(__name__)
#: Requests planned per call to the router.
PLAN_CHUNK = 256
#: Failed submissions of one job before its items go synchronously.
MAX_SUBMITS = 3

PlanFn = Callable[[list[RouteRequest]], Awaitable[list[BatchPlan]]]
SettleFn = Callable[[list[BatchSettle]], Awaitable[list[RouteResult | RoutingError]]]


class BatchRun:
    """Drives one run's batch jobs on the runner's event loop (`RunRows` builds the rows)."""

    def __init__(self, run: Any, apis: dict[str, BatchApi], journal: BatchJournal,
                 plan: PlanFn, settle: SettleFn) -> None:
        self.run = run
        self.spec = run.prep.spec
        self.apis = apis
        self.journal = journal
        self._plan, self._settle = plan, settle
        self.intents = journal.read()
        self.seq = max(self.intents, default=-1) + 1
        self.items: dict[str, Waiting] = {}  # custom_id → item waiting for its job's outcome
        self.by_key: dict[str, str] = {}  # result key → custom_id of the item waiting for it
        self.held: dict[str, ItemOutcome] = {}  # outcomes whose bar is not planned yet
        self.pending: dict[str, list[tuple[BarJob, str, int, int]]] = {}  # provider → items
        self.open: dict[int, Intent] = {}  # intents not done
        self.ended: set[int] = set()  # open intents whose job ended (results taken)
        self.submits: dict[int, int] = {}
        self.unsent: set[int] = set()  # intents with no job id and no submission under way
        self.todo: list[tuple[BarJob, str, int, int]] = []  # (job, policy, gen, tries) to plan
        self.slots = asyncio.Semaphore(run.window)
        self.sync: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.jobs = 0
        self.counts: dict[str, list[int]] = {}  # provider → [submitted items, done items]
        # (provider, prompt) of each item pending or waiting → other policies' requests that
        # chose the same: planned again when it is answered, not paid for twice
        self.twins: dict[tuple[str, str], list[tuple[BarJob, str, int, int]]] = {}

    # -- resume ------------------------------------------------------------------------

    def resume(self, finished: set[str], priors: dict[str, Prior]) -> None:
        """Open intents from the journal: items recorded since are skipped, the rest wait."""
        for it, waiting in still_open(self.intents, finished, priors):
            if not waiting:
                self.journal.finished(it)
                continue
            for w in waiting:
                priors.pop(w.ref.key, None)
                self.items[w.ref.custom_id] = w
                self.by_key[w.ref.key] = w.ref.custom_id
                self.twins.setdefault((w.provider, prompt_of(w.ref.key)), [])
            self.open[it.seq] = it
            if it.batch_id is None:
                self.unsent.add(it.seq)
            self._count(it.provider, submitted=len(waiting))
        if self.open:
            log.warning("resuming %d batch job(s) with %d item(s) already submitted",
                        len(self.open), len(self.items))

    # -- the main loop -----------------------------------------------------------------

    async def dispatch(self, planner: Planner, finished: set[str],
                       priors: dict[str, Prior]) -> None:
        self.resume(finished, priors)
        poller = asyncio.ensure_future(self._poll_loop())
        try:
            async for job in planner.jobs():
                self._raise()
                for policy in self.spec.policies:
                    key = job.key(policy)
                    if key in finished or self.run.stopped:
                        continue
                    cid = self.by_key.get(key)
                    if cid is not None:  # submitted before a kill: its outcome comes
                        self.items[cid].job = job
                        if cid in self.held:
                            await self._outcomes([(cid, self.held.pop(cid))])
                        continue
                    prior = priors.pop(key, None)
                    if prior is not None and prior.final:
                        self.run.from_prior(job, policy, prior)
                        continue
                    self.todo.append((job, policy, prior.next_gen if prior else 1, 1))
                if self.run.sender is not None:
                    for rid, s in self.run.gate.advance(job.series, job.bar):
                        self.run.sender.put(rid, s)
                if len(self.todo) >= PLAN_CHUNK:
                    await self._plan_todo()
                self._flush_store()
                if self.run.stopped:
                    break
            await self._plan_todo()
            for provider in list(self.pending):
                await self._submit(provider)
            while self.items or self.sync or self.todo or any(self.pending.values()) or \
                    any(self.twins.values()):
                self._raise()
                await self._plan_todo()
                for provider in [p for p, v in self.pending.items() if v]:
                    await self._submit(provider)
                await asyncio.sleep(min(0.2, self.spec.batch_poll_s))
                self._flush_store()
                if self.run.stopped and not self.sync and all(
                        i.job is None for i in self.items.values()):
                    break  # what waits has no planned bar: the resume collects it
            self._raise()
        finally:
            poller.cancel()
            for t in self.sync:
                t.cancel()
            self.journal.close()

    def _raise(self) -> None:
        if self.errors:
            raise self.errors[0]

    def _flush_store(self) -> None:
        if self.run.store.due(self.spec.part_rows):
            self.run.store.flush()

    # -- planning ----------------------------------------------------------------------

    async def _plan_todo(self) -> None:
        while self.todo:
            chunk, self.todo = self.todo[:PLAN_CHUNK], self.todo[PLAN_CHUNK:]
            reqs = [self._request(job, policy, gen) for job, policy, gen, _ in chunk]
            plans = await self._plan(reqs)
            for (job, policy, gen, tries), plan in zip(chunk, plans, strict=True):
                self._take_plan(job, policy, gen, tries, plan)
            for provider, waiting in list(self.pending.items()):
                if len(waiting) >= self.spec.batch_size:
                    await self._submit(provider)

    def _request(self, job: BarJob, policy: str, gen: int) -> RouteRequest:
        from actors.backtest.runner import request_id

        return job.request.model_copy(update={
            "policy": policy, "request_id": request_id(self.run.prep.run_id, job, policy, gen)})

    def _take_plan(self, job: BarJob, policy: str, gen: int, tries: int,
                   plan: BatchPlan) -> None:
        run = self.run
        if plan.kind is PlanKind.BATCH and plan.provider in self.apis:
            twin = (plan.provider, job.key(""))
            if self.spec.cache == "both" and twin in self.twins:
                self.twins[twin].append((job, policy, gen, tries))  # asks again once answered
                return
            self.twins[twin] = []
            self.pending.setdefault(plan.provider, []).append((job, policy, gen, tries))
        elif plan.kind in (PlanKind.BATCH, PlanKind.SYNC):  # no batch client: synchronously
            self._sync(job, policy, gen, (plan.provider, plan.fallbacks))
        elif plan.kind is PlanKind.ANSWERED and plan.result is not None:
            run.from_result(job, policy, plan.result)
        else:
            run.failed(job, policy, plan.request_id, plan.routing_error())

    def _sync(self, job: BarJob, policy: str, gen: int,
              pin: tuple[str | None, list[str]] | None = None) -> None:
        async def go() -> None:
            await self.slots.acquire()
            await self.run.one(job, policy, gen, self.slots, pin=pin)

        t = asyncio.ensure_future(go())
        self.sync.add(t)

        def done(t: asyncio.Task[None]) -> None:
            self.sync.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.errors.append(t.exception())  # type: ignore[arg-type]

        t.add_done_callback(done)

    # -- jobs --------------------------------------------------------------------------

    async def _submit(self, provider: str) -> None:
        waiting = self.pending.pop(provider, [])
        while waiting:
            chunk, waiting = waiting[:self.spec.batch_size], waiting[self.spec.batch_size:]
            seq, self.seq = self.seq, self.seq + 1
            tag = run_tag(self.run.prep.run_id, seq)
            refs = []
            for i, (job, policy, gen, tries) in enumerate(chunk):
                rid = self._request(job, policy, gen).request_id or ""
                ref = ItemRef(custom_id=custom_id(tag, i), key=job.key(policy),
                              request_id=rid, tries=tries)
                refs.append(ref)
                self.run.store.dispatched(ref.key, rid, self.run.router)
                self.items[ref.custom_id] = Waiting(ref, provider, seq, policy, job)
                self.by_key[ref.key] = ref.custom_id
            it = self.journal.intend(seq, provider, tag, refs)
            self.open[seq] = it
            self.run.sent += len(refs)
            self._count(provider, submitted=len(refs))
            await self._send(it)

    async def _send(self, it: Intent) -> None:
        """Submit an intent's job; a failure leaves it without an id (resolved later)."""
        reqs = [(ref.custom_id, self.items[ref.custom_id].request().completion())
                for ref in it.items if ref.custom_id in self.items]
        try:
            job = await self.apis[it.provider].submit(reqs, it.tag)
        except (ProviderError, OSError) as exc:
            self.unsent.add(it.seq)
            self.submits[it.seq] = self.submits.get(it.seq, 0) + 1
            log.warning("batch job %s for %s not submitted (%s)", it.tag, it.provider, exc)
            return
        self.journal.submitted(it, job.id)
        self.jobs += 1
        log.info("batch job %s (%s, %d items) submitted as %s", it.tag, it.provider,
                 len(reqs), job.id)

    async def _resolve(self, it: Intent) -> None:
        """An intent without a job id: find its job by tag, or submit it if it never was."""
        api = self.apis[it.provider]
        found = await api.find(it.tag, it.at)
        if found:
            self.unsent.discard(it.seq)
            self.journal.submitted(it, found[0].id)
            return
        if await api.unresolved(it.at):
            return  # a running job may be ours (Anthropic shows custom_ids once ended)
        mine = [self.items[r.custom_id] for r in it.items if r.custom_id in self.items]
        if any(i.job is None for i in mine):
            return  # resubmitted once every bar of it is planned again
        if self.submits.get(it.seq, 0) >= MAX_SUBMITS:
            log.warning("batch job %s could not be submitted %d times; its items go "
                        "synchronously", it.tag, MAX_SUBMITS)
            for item in mine:
                assert item.job is not None
                self._forget(item)
                self._sync(item.job, item.policy, generation(item.ref.request_id) + 1)
            self.unsent.discard(it.seq)
            self._close(it)
            return
        self.unsent.discard(it.seq)
        await self._send(it)

    async def _poll_loop(self) -> None:
        while True:
            try:
                for it in list(self.open.values()):
                    if it.seq in self.ended:
                        continue
                    if it.batch_id is None:
                        if it.seq in self.unsent:  # else: being submitted right now
                            await self._resolve(it)
                    elif it.provider in self.apis:
                        job = await self.apis[it.provider].poll(it.batch_id)
                        if job.state == "ended":
                            out = await self.apis[it.provider].results(it.batch_id)
                            await self._ended(it, out)
                self.run.progress.batches(self.status())
            except (ProviderError, OSError) as exc:  # the provider's trouble: poll again later
                log.warning("batch poll failed: %s", exc)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.errors.append(exc)
                return
            await asyncio.sleep(self.spec.batch_poll_s)

    async def _ended(self, it: Intent, out: list[ItemOutcome]) -> None:
        got = {o.custom_id: o for o in out}
        mine = [ref.custom_id for ref in it.items if ref.custom_id in self.items]
        for cid in mine:
            if cid not in got:  # the provider lost it: like an expired item
                got[cid] = ItemOutcome(custom_id=cid, error_class=ErrorClass.TIMEOUT,
                                       error="no result for this item in the ended job")
        self.ended.add(it.seq)
        await self._outcomes([(cid, got[cid]) for cid in mine])
        self._close_if_recorded(it.seq)

    def _close(self, it: Intent) -> None:
        self.open.pop(it.seq, None)
        self.ended.discard(it.seq)
        self.journal.finished(it)

    def _close_if_recorded(self, seq: int) -> None:
        """An ended job is done once each of its items' outcomes is recorded (some may
        wait for their bar to be planned again after a resume)."""
        it = self.open.get(seq)
        if it is not None and seq in self.ended and not any(
                r.custom_id in self.items for r in it.items):
            self._close(it)

    async def _outcomes(self, outs: list[tuple[str, ItemOutcome]]) -> None:
        """Record outcomes whose bar is known; hold the others until it is."""
        ready = []
        for cid, o in outs:
            item = self.items.get(cid)
            if item is None:
                continue
            if item.job is None:
                self.held[cid] = o
            else:
                ready.append(item)
        if not ready:
            return
        results = await self._settle([BatchSettle(request=i.request(), provider=i.provider,
                                                  outcome=dict(outs)[i.ref.custom_id])
                                      for i in ready])
        for item, res in zip(ready, results, strict=True):
            self._forget(item)
            self._count(item.provider, done=1)
            assert item.job is not None
            if isinstance(res, RouteResult):
                self.run.from_result(item.job, item.policy, res)
            else:
                self._failed(item, res)
        for seq in {i.seq for i in ready}:
            self._close_if_recorded(seq)

    def _failed(self, item: Waiting, exc: RoutingError) -> None:
        """The retry rule of batch_rule.py."""
        run, job, ref = self.run, item.job, item.ref
        assert job is not None
        step = next_step(exc.error_class, ref.tries, self.spec.batch_retries)
        if step is Next.FAIL or run.stopped:
            run.from_error(job, item.policy, ref.request_id, exc)
            return
        label = f"{exc.error_class.value} ({step.value})"
        run.failures[label] += 1
        run.progress.note(label)
        gen = generation(ref.request_id) + 1
        if step is Next.BATCH:
            self.todo.append((job, item.policy, gen, ref.tries + 1))
        else:
            self._sync(job, item.policy, gen)

    def _forget(self, item: Waiting) -> None:
        """An item no longer waits: other policies' requests for the same prompt to the same
        provider are planned again (with the cache on, its answer is theirs for $0)."""
        self.items.pop(item.ref.custom_id, None)
        if self.by_key.get(item.ref.key) == item.ref.custom_id:
            del self.by_key[item.ref.key]
        self.todo.extend(self.twins.pop((item.provider, prompt_of(item.ref.key)), []))

    # -- progress ----------------------------------------------------------------------

    def _count(self, provider: str, submitted: int = 0, done: int = 0) -> None:
        c = self.counts.setdefault(provider, [0, 0])
        c[0] += submitted
        c[1] += done

    def status(self) -> dict[str, tuple[int, int, int]]:
        """Per provider: (items submitted, in progress, done) by this invocation."""
        return {p: (s, s - d, d) for p, (s, d) in sorted(self.counts.items())}
