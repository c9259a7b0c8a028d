"""`router`: the singleton actor wrapping `Router` with Ray handles.

Records go to the tracker in batches, fire-and-forget from the request path; a batch is
kept until the tracker acknowledges it and re-sent if the tracker died meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

import ray

from actors.budget import BudgetSpec
from actors.channel import ChannelBroken, ChannelPool, ChannelServer
from actors.config import parse_config
from actors.journal import Journal
from actors.messages import ProviderCall, ProviderReply
from actors.metrics import Metrics
from actors.policies import POLICIES
from actors.records import RequestRecord, WarningRecord
from actors.route import RouteRequest, RouteResult
from actors.router import Router
from actors.router_metrics import RequestObserver, at_provider
from actors.tracker import NAME as TRACKER
from actors.tracker import NAMESPACE, TrackerSpec

FLUSH_EVERY_S = 0.05
MAX_BATCH = 500
log = logging.getLogger(__name__)


def provider_actor_name(name: str) -> str:
    return f"provider:{name}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10000)
class RouterActor(ChannelServer):
    """Callers reach `route` through a channel (actors/channel.py) or as a plain call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = parse_config(config, "router config")
        self._handles: dict[str, Any] = {}
        self._channels: dict[str, ChannelPool] = {}
        self._tracker = None
        self._metrics = Metrics()
        self._observer = RequestObserver(self.config.metrics, self._metrics, POLICIES)
        self.core = Router(self.config, self._call_provider, self._sink,
                           on_warning=self._warning)
        self._born = time.time()  # records before this come from the audit trail
        # (journal seq, records) entries waiting for / in flight to the tracker
        self._buffer: list[tuple[int, list[Any]]] = []
        self._unacked: dict[Any, list[tuple[int, list[Any]]]] = {}
        # The router's files (journal, budget override) live next to the audit database.
        self._state_dir = str(TrackerSpec.from_config(self.config).db_path.parent)
        self._seq = 0  # last record-entry sequence number handed out
        self._journal = self._open_journal()
        if self._journal:
            self._seq = self._journal.seq
        self._load_budget_override()
        self._started = False
        self._seeded = False

    # -- wiring --------------------------------------------------------------------------

    def _handle(self, name: str):
        h = self._handles.get(name)
        if h is None:
            h = ray.get_actor(provider_actor_name(name), namespace=NAMESPACE)
            self._handles[name] = h
        return h

    def _tracker_handle(self):
        if self._tracker is None:
            self._tracker = ray.get_actor(TRACKER, namespace=NAMESPACE)
        return self._tracker

    async def _call_provider(self, name: str, call: ProviderCall) -> ProviderReply:
        pool = self._channels.get(name)
        if pool is None:
            pool = self._channels[name] = ChannelPool(lambda: self._handle(name), f"provider:{name}")
        try:
            with at_provider():
                return await pool.call(call)
        except (ChannelBroken, ray.exceptions.RayActorError):
            self._handles.pop(name, None)  # re-resolve: it may have been replaced
            pool.reset()
            raise

    def _open_journal(self) -> Journal | None:
        spec = self.core.spec
        if not spec.journal:
            return None
        path = spec.journal_path or os.path.join(self._state_dir, "router-journal.jsonl")
        journal = Journal(os.path.expanduser(path))
        for seq, records in journal.pending():  # answered before a restart, never acknowledged
            self._buffer.append((seq, records))
        if self._buffer:
            log.warning("re-sending %d journaled record batches to the tracker", len(self._buffer))
        return journal

    def _override_path(self) -> str:
        return os.path.join(self._state_dir, "budgets-override.json")

    def _load_budget_override(self) -> None:
        """An admin's budget change survives a router restart."""
        try:
            with open(self._override_path()) as fh:
                self._apply_budgets(json.load(fh))
        except FileNotFoundError:
            pass
        except Exception as exc:
            log.warning("ignoring unreadable budget override: %s", exc)

    def _apply_budgets(self, budgets: dict[str, Any]) -> None:
        self.core.set_budgets(BudgetSpec.model_validate(budgets))

    def _sink(self, records: list[Any]) -> None:
        """Journal first (so a killed router loses nothing it answered), then batch."""
        if self._journal:
            seq = self._journal.append(records)
        else:
            seq = self._seq + 1
        self._seq = seq
        self._buffer.append((seq, records))

    def _warning(self, message: str) -> None:
        scope = message.split(" ", 1)[0]
        self._metrics.budget_warning(scope)
        self._sink([WarningRecord(ts=time.time(), scope=scope, message=message)])

    async def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        loop.create_task(self._flush_loop())
        loop.create_task(self._refresh_loop())
        if self._buffer:  # journaled records first, so the spend we seed from includes them
            await self._drain(timeout_s=10.0)
        await self._seed_budgets()
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

    async def _seed_budgets(self) -> None:
        """After a (re)start, count spend already recorded in the current hour and day."""
        if self._seeded:
            return
        self._seeded = True
        try:
            now = time.time()
            ledger = self.core.ledger
            scopes = ["*", *ledger.spec.per_provider]
            for window in ("hourly", "daily"):
                since = ledger.window_start(window, now)
                for scope in scopes:
                    spent = await self._tracker_handle().spend_since.remote(
                        since, None if scope == "*" else scope)
                    ledger.seed(scope, window, float(spent), now)
        except Exception as exc:  # tracker not there yet: start from zero, say so
            log.warning("could not seed budgets from the tracker: %s", exc)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self._flush()
            except Exception as exc:  # never let the loop die
                log.warning("record flush failed: %s", exc)

    async def _flush(self) -> None:
        while self._buffer:
            entries: list[tuple[int, list[Any]]] = []
            n = 0
            while self._buffer and (n == 0 or n + len(self._buffer[0][1]) <= MAX_BATCH):
                entry = self._buffer.pop(0)
                entries.append(entry)
                n += len(entry[1])
            batch = [r for _, records in entries for r in records]
            ref = self._tracker_handle().record.remote(batch)
            self._unacked[ref] = entries
            asyncio.ensure_future(self._ack(ref))

    async def _ack(self, ref: Any) -> None:
        """Forget a batch once the tracker committed it; queue it again if it did not."""
        try:
            await ref
        except Exception as exc:
            entries = self._unacked.pop(ref, [])
            log.warning("tracker did not acknowledge %d records (%s); re-sending",
                        sum(len(r) for _, r in entries), type(exc).__name__)
            self._tracker = None
            self._buffer[:0] = entries
        else:
            entries = self._unacked.pop(ref, [])
            if self._journal:
                self._journal.ack(seq for seq, _ in entries)

    async def _refresh_loop(self) -> None:
        """Snapshots for idle providers and budget metrics, off the hot path."""
        last_snap = 0.0
        while True:
            await asyncio.sleep(0.1)
            try:
                if time.monotonic() - last_snap >= max(1.0, self.core.spec.snapshot_refresh_s):
                    last_snap = time.monotonic()
                    await self.refresh_snapshots()
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
        return await self._observer.route(req, self.core.route)

    async def refresh_snapshots(self) -> list[dict[str, Any]]:
        names = list(self.core.providers)
        refs = [self._handle(n).snapshot.remote() for n in names]
        out = []
        for n, ref in zip(names, refs, strict=True):
            try:
                snap = await ref
            except Exception:
                self._handles.pop(n, None)
                continue
            self.core.update_snapshot(snap)
            out.append(snap)
        return out

    async def reset(self, provider: str) -> dict[str, Any]:
        if provider not in self.core.providers:
            raise ValueError(f"unknown provider {provider!r}; configured: "
                             f"{', '.join(self.core.providers)}")
        snap = await self._handle(provider).reset.remote()
        self.core.update_snapshot(snap)
        return snap

    async def set_budgets(self, budgets: dict[str, Any]) -> list[dict[str, Any]]:
        """Replace the budget limits at run time (admin); spend so far is kept."""
        await self._ensure_started()
        self._apply_budgets(budgets)  # raises ValidationError naming the bad key
        tmp = self._override_path() + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(budgets, fh)
        os.replace(tmp, self._override_path())
        return self.core.ledger.status(time.time())

    async def feedback(self, request_id: str, score: float) -> None:
        """A realized outcome: learned at once when this router answered the request (and
        recorded through the journal, after the request's own records); otherwise the
        tracker checks the id against the audit trail and stores it."""
        await self._ensure_started()
        if self.core.feedback(request_id, float(score)) is not None:
            return
        try:
            await self._tracker_handle().feedback.remote(request_id, float(score))
        except ray.exceptions.RayTaskError as exc:  # the tracker's own error, unwrapped
            cause = getattr(exc, "cause", None)
            raise cause if isinstance(cause, BaseException) else exc from None

    def estimates(self) -> list[dict[str, Any]]:
        """What the router has learned: per provider and context (rows for a DataFrame)."""
        return self.core.learner.table()

    def quality_prices(self) -> list[dict[str, Any]]:
        """cost-aware's price of quality per quality target."""
        return self.core.learner.prices_table()

    async def budgets(self) -> list[dict[str, Any]]:
        await self._ensure_started()
        return self.core.ledger.status(time.time())

    async def flush(self) -> int:
        """Push buffered records and wait until the tracker acknowledged all of them."""
        await self._ensure_started()
        return await self._drain(timeout_s=30.0)

    def _outstanding(self) -> list[int]:
        seqs = [seq for seq, _ in self._buffer]
        seqs += [seq for entries in self._unacked.values() for seq, _ in entries]
        return seqs

    async def _drain(self, timeout_s: float) -> int:
        """Wait until every record buffered *now* is acknowledged (later ones don't count,
        so this returns promptly under steady load)."""
        target = self._seq
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self._flush()
            if not any(seq <= target for seq in self._outstanding()):
                return 0
            await asyncio.sleep(0.02)
        return sum(len(r) for _, r in self._buffer) + sum(
            len(r) for entries in self._unacked.values() for _, r in entries)

    def channel_counts(self) -> dict[str, dict[str, int]]:
        """Logical calls vs socket and Ray calls per provider channel (which path works)."""
        out: dict[str, dict[str, int]] = {}
        for name, pool in self._channels.items():
            for c in list(pool._by_loop.values()):
                agg = out.setdefault(name, dict.fromkeys(c.counts, 0))
                for k, v in c.counts.items():
                    agg[k] += v
        return out

    def inflight(self) -> int:
        return self.core.inflight

    def provider_names(self) -> list[str]:
        """The providers this router routes to (`llm-router status` checks each is there)."""
        return list(self.core.providers)

    def active(self, request_ids: list[str]) -> list[str]:
        """Which of these requests are being routed right now (a resumed backtest asks)."""
        return [r for r in request_ids if r in self.core.active]

    def ready(self) -> bool:
        return True


__all__ = ["RouterActor", "RequestRecord", "NAMESPACE", "provider_actor_name"]
