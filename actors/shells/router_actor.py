"""`router`: the singleton actor wrapping `Router` with Ray handles.

Records go to the tracker through a `RecordShipper` (actors/shells/shipper.py): journaled, sent in
batches off the request path, kept until the tracker acknowledges them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import ray

from actors.config import parse_config
from actors.core.budget import BudgetWarning
from actors.core.budget_seeding import BudgetSeeding
from actors.core.feedback import FeedbackAck, FeedbackItem, record_all
from actors.core.records import RequestRecord, WarningRecord
from actors.policy.policies import POLICIES
from actors.routing.route import RouteRequest, RouteResult, RoutingError
from actors.routing.router import Router
from actors.rpc.channel import ChannelPool
from actors.rpc.channel_server import ChannelServer
from actors.shells.metrics import Metrics
from actors.shells.provider_links import ProviderLinks, provider_actor_name
from actors.shells.ray_calls import aget
from actors.shells.router_metrics import RequestObserver
from actors.shells.router_state import RouterState
from actors.shells.shipper import RecordShipper
from actors.shells.tracker import NAME as TRACKER
from actors.shells.tracker import NAMESPACE
from actors.stores.pg_journal import PgJournal

#: How long a restarted router waits for the tracker to take its journaled records before
#: seeding its budgets (a tracker restarted with it on a new node takes a while to start).
STARTUP_DRAIN_S = 60.0
#: Longest an answer waits for its journal commit (the database unreachable): then it is
#: sent anyway, its records kept in memory for the journal and the tracker, and logged.
JOURNAL_SYNC_WAIT_S = 5.0
log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10000)
class RouterActor(ChannelServer):
    """Callers reach `route` through a channel (actors/rpc/channel.py) or as a plain call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = parse_config(config, "router config")
        self._links = ProviderLinks()
        self._tracker = None
        self._records_pool: ChannelPool | None = None
        self._metrics = Metrics()
        self._observer = RequestObserver(self.config.metrics, self._metrics, POLICIES)
        self.core = Router(self.config, self._links.call, self._sink,
                           on_warning=self._warning)
        self._born = time.time()  # records before this come from the audit trail
        self._shipper = RecordShipper(self._send_records, on_failure=self._tracker_lost)
        self._startup: asyncio.Future[None] | None = None
        self._seeding = BudgetSeeding(self.core.ledger, self._spend_since,
                                      self._pending_at_providers, self.config.simulate)
        self._sync_journal = False
        # This instance's state directory, locked for as long as this process lives.
        try:
            self._state = RouterState(self.config, self.core.spec.journal_path,
                                      self.core.spec.store_text,
                                      owner=ray.get_runtime_context().get_actor_id() or "",
                                      on_fenced=self._fenced)
        except Exception as exc:  # another instance holds it: refuse, via ready()
            self._refused: Exception | None = exc
            log.error("%s", exc)
            return
        self._refused = None
        self.core.keep_text = self._state.text.apply  # the journal honours store_text too
        self.core.idempotency = self._state.book
        self.core.stream_provider = self._links.stream
        self.core.cache = self._state.cache
        self.core.set_budgets(self._state.overrides.spec)
        journal = self._state.open_journal() if self.core.spec.journal else None
        self._shipper = RecordShipper(self._send_records, journal,
                                      on_failure=self._tracker_lost)
        if self._shipper.resending:  # answered before a restart, never acknowledged
            log.warning("re-sending %d journaled record batches to the tracker",
                        self._shipper.resending)
        if journal is not None:
            sync = self.core.spec.journal_sync
            self._sync_journal = isinstance(journal, PgJournal) if sync is None else sync
        if isinstance(journal, PgJournal):  # an outcome is stored once its records are
            self._state.book.durable_first = journal.synced
        log.warning("%s%s", "SIMULATED providers; " if self.config.simulate else "",
                    self._state.overrides.summary())

    # -- wiring --------------------------------------------------------------------------

    def _tracker_handle(self):
        if self._tracker is None:
            self._tracker = ray.get_actor(TRACKER, namespace=NAMESPACE)
        return self._tracker

    def _tracker_pool(self) -> ChannelPool:
        """Records go over a channel (a Unix socket on the tracker's node): a Ray call costs
        milliseconds of this event loop's time per batch, a frame tens of microseconds."""
        if self._records_pool is None:
            self._records_pool = ChannelPool(self._tracker_handle, "tracker")
        return self._records_pool

    def _chan_stream(self, req: RouteRequest) -> AsyncIterator[Any]:
        return self._route_stream(req)

    async def _route_stream(self, req: RouteRequest) -> AsyncIterator[Any]:
        """Counted in the request metrics like `route` (the whole stream's time counts as
        the provider's: the router's own share of a stream is not measured)."""
        await self._ensure_started()
        t0 = time.perf_counter()
        try:
            async for item in self.core.route_stream(req):
                if isinstance(item, RouteResult) and self._metrics.enabled:
                    took = time.perf_counter() - t0
                    self._observer.observe(req, item.trace, "ok", took, took)
                yield item
        except RoutingError as exc:
            if self._metrics.enabled:
                took = time.perf_counter() - t0
                self._observer.observe(req, exc.trace, exc.error_class.value, took, took)
            raise

    def _sink(self, records: list[Any]) -> None:
        """Journal first (so a killed router loses nothing it answered), then batch."""
        self._shipper.add(records)

    async def _send_records(self, batch: list[Any]) -> None:
        await self._tracker_pool().call(batch)

    def _tracker_lost(self) -> None:
        """A batch went unacknowledged: re-resolve the tracker before the re-send."""
        self._tracker = None
        if self._records_pool is not None:
            self._records_pool.reset()

    def _warning(self, w: BudgetWarning) -> None:
        self._metrics.budget_warning(w.scope)
        self._sink([WarningRecord(ts=time.time(), scope=w.scope, message=w.message)])

    async def _ensure_started(self) -> None:
        """Every caller waits until start-up is done: a request routed meanwhile would book
        spend that seeding the budgets from the audit trail then overwrote."""
        if self._refused is not None:
            raise self._refused
        if self._startup is None:
            self._startup = asyncio.ensure_future(self._start())
        await asyncio.shield(self._startup)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.create_task(self._shipper.run())
        loop.create_task(self._refresh_loop())
        if self._shipper.resending:  # journaled first, so the spend we seed from includes them
            left = await self._shipper.drain(STARTUP_DRAIN_S)
            if left:
                log.warning("%d journaled records not yet acknowledged by the tracker; budgets "
                            "start without their spend", left)
        await self._seeding.at_start()
        await self._relearn()

    async def _relearn(self) -> None:
        """A (re)started router rebuilds what it had learned from the audit trail."""
        try:
            history = await self._tracker_handle().history.remote(
                self._born, self.core.spec.learning.rebuild_requests)
            self.core.relearn(history)
            if history:
                log.info("rebuilt routing estimates from %d audit records", len(history))
        except Exception as exc:  # tracker not there: learn from scratch, say so
            log.warning("could not rebuild routing estimates from the tracker: %s", exc)

    async def _pending_at_providers(self) -> dict[str, float]:
        """What a dead predecessor left in flight at each provider (worst case), plus its
        orphaned attempts not yet in the audit trail."""
        names = list(self.core.providers)
        refs = [self._links.handle(n).pending_usd.remote() for n in names]
        out: dict[str, float] = {}
        for name, ref in zip(names, refs, strict=True):
            try:
                out[name] = float(await asyncio.wait_for(ref, 10))
            except Exception as exc:  # a provider restarting has nothing in flight
                log.warning("could not ask provider %s for its pending spend: %s", name, exc)
        return out

    async def _spend_since(self, since: float, provider: str | None, simulated: bool) -> float:
        return await self._tracker_handle().spend_since.remote(since, provider, simulated)

    async def _refresh_loop(self) -> None:
        """Snapshots for idle providers and budget metrics, off the hot path."""
        last_snap = 0.0
        while True:
            await asyncio.sleep(0.1)
            try:
                period = max(1.0, self.core.spec.snapshot_refresh_s)
                if time.monotonic() - last_snap >= period:
                    last_snap = time.monotonic()  # busy providers' replies carry theirs
                    await self.refresh_snapshots(self.core.stale_snapshots(period))
                for row in self.core.ledger.status(time.time()):
                    if row["used"] is not None:
                        self._metrics.budget(str(row["scope"]), str(row["window"]), float(row["used"]))
            except Exception as exc:
                log.debug("refresh failed: %s", exc)

    # -- public methods ------------------------------------------------------------------

    async def _chan_handle(self, req: RouteRequest) -> RouteResult:
        return await self.route(req)

    async def route(self, req: RouteRequest | dict[str, Any]) -> RouteResult:
        await self._ensure_started()
        if isinstance(req, dict):
            req = RouteRequest.model_validate(req)
        return await self._observer.route(req, self._route_durably)

    async def _route_durably(self, req: RouteRequest) -> RouteResult:
        """Route; with `journal_sync`, answer (or fail) only once the records are journaled."""
        try:
            return await self.core.route(req)
        finally:
            journal = self._shipper.journal
            if self._sync_journal and isinstance(journal, PgJournal):
                try:
                    await asyncio.wait_for(journal.synced(), JOURNAL_SYNC_WAIT_S)
                except TimeoutError:
                    log.warning("journal not committed within %g s (%s); answering anyway",
                                JOURNAL_SYNC_WAIT_S, journal.error)

    async def refresh_snapshots(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Ask providers (`names`, default all) for their snapshots: each is a Ray call,
        milliseconds of this loop's time, so the refresh loop asks only idle ones."""
        names = list(self.core.providers) if names is None else names
        refs = [self._links.handle(n).snapshot.remote() for n in names]
        out = []
        for n, ref in zip(names, refs, strict=True):
            try:
                snap = await ref
            except Exception:
                self._links.forget(n)
                continue
            self.core.update_snapshot(snap)
            out.append(snap)
        return out

    async def reset(self, provider: str) -> dict[str, Any]:
        if provider not in self.core.providers:
            raise ValueError(f"unknown provider {provider!r}; configured: "
                             f"{', '.join(self.core.providers)}")
        snap = await self._links.handle(provider).reset.remote()
        self.core.update_snapshot(snap)
        return snap

    async def set_budgets(self, budgets: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Merge a change into the budget limits at run time (admin; a JSON merge patch:
        null removes a limit), or with None go back to the configured ones. Spend so far
        is kept; the change is saved and re-applied at every start."""
        await self._ensure_started()
        o = self._state.overrides
        spec = o.reset() if budgets is None else o.apply(budgets)  # ValidationError names the key
        self.core.set_budgets(spec)
        if {*spec.per_provider} - self._seeding.seeded:  # its records reach the trail first
            await self._shipper.drain(5.0)
            await self._seeding.new_scopes()
        return await self.budgets()

    async def feedback(self, request_id: str, score: float) -> None:
        """A realized outcome: learned at once when this router answered the request (and
        recorded through the journal, after the request's own records); otherwise the
        tracker checks the id against the audit trail and stores it."""
        await self._ensure_started()
        if self.core.feedback(request_id, float(score)) is not None:
            return
        await self._tracker_feedback(request_id, score)

    async def feedback_many(self, items: list[FeedbackItem]) -> list[FeedbackAck]:
        """Many outcomes in one call, in order, each as `feedback` takes it, each
        acknowledged on its own (actors/core/feedback.py)."""
        await self._ensure_started()
        return await record_all(items, self.core.feedback, self._tracker_feedback)

    async def _tracker_feedback(self, request_id: str, score: float) -> None:
        await aget(self._tracker_handle().feedback.remote(request_id, float(score)))

    def estimates(self) -> list[dict[str, Any]]:
        """What the router has learned: per provider and context (rows for a DataFrame)."""
        return self.core.learner.table()

    def quality_prices(self) -> list[dict[str, Any]]:
        """cost-aware's price of quality per quality target."""
        return self.core.learner.prices_table()

    async def budgets(self) -> list[dict[str, Any]]:
        """Spend against every limit in force, and where each limit comes from."""
        await self._ensure_started()
        origin = {(s.scope, s.key.removesuffix("_usd")): s.describe()
                  for s in self._state.overrides.sources()}
        rows = self.core.ledger.status(time.time())
        for row in rows:
            row["source"] = origin.get((str(row["scope"]), str(row["window"])), "")
        return rows

    def describe(self) -> dict[str, Any]:
        """What a start-up message should say: state directory, simulated or real, budgets."""
        if self._refused is not None:
            raise self._refused
        return {"state_dir": str(self._state.dir), "simulated": self.config.simulate,
                "budgets": self._state.overrides.summary(),
                "idempotency_window_s": self._state.book.spec.window_s,
                "cache": self.core.cache.stats() if self.core.cache is not None else None}

    def config_data(self) -> dict[str, Any]:
        """The configuration in force (a Serve replica attaches with it)."""
        return self.config.model_dump(mode="json")

    async def flush(self) -> int:
        """Push buffered records and wait until the tracker acknowledged all of them (and
        every kept request outcome is in the idempotency store)."""
        await self._ensure_started()
        if self.core.idempotency is not None:
            await self.core.idempotency.flush()
        if self.core.cache is not None:
            await self.core.cache.flush()
        return await self._shipper.drain(30.0)

    def channel_counts(self) -> dict[str, dict[str, int]]:
        """Logical calls vs socket and Ray calls per provider channel (which path works)."""
        return self._links.counts()

    def inflight(self) -> int:
        return self.core.inflight

    def provider_names(self) -> list[str]:
        """The providers this router routes to (`llm-router status` checks each is there)."""
        return list(self.core.providers)

    async def batch_plan(self, reqs: list[RouteRequest]) -> list[Any]:
        """Decide many backtest requests for provider batches (actors/routing/batch_route.py)."""
        await self._ensure_started()
        return [await self._desk().plan(r) for r in reqs]

    async def batch_settle(self, items: list[Any]) -> list[Any]:
        """Record batch items' outcomes like synchronous answers (actors/routing/batch_route.py)."""
        await self._ensure_started()
        return [self._desk().settle(s) for s in items]

    def _desk(self) -> Any:
        if getattr(self, "_batch_desk", None) is None:
            from actors.routing.batch_route import BatchDesk

            self._batch_desk = BatchDesk(self.core)
        return self._batch_desk

    def active(self, request_ids: list[str]) -> list[str]:
        """Which of these requests are being routed right now (a resumed backtest asks)."""
        return [r for r in request_ids if r in self.core.active]

    def _fenced(self, exc: Exception) -> None:
        """Another router took this deployment's state over (actors/stores/lease.py): refuse
        every request from now on, as at a refused start."""
        self._refused = exc

    def release_lease(self) -> None:
        """Before a deliberate stop (stop_system): free the lease at once."""
        if self._refused is None:
            self._state.release_lease()

    def ready(self) -> bool:
        if self._refused is not None:
            raise self._refused  # e.g. StateDirInUse: the caller kills this actor
        return True


__all__ = ["RouterActor", "RequestRecord", "NAMESPACE", "provider_actor_name"]
