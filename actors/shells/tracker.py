"""The tracker: durable audit trail plus the performance and cost figures derived from it.

`Tracker` is the plain core: every batch is written to the audit store first (the commit is
the acknowledgement), and only what was newly stored then feeds the in-memory aggregates,
so a re-sent batch changes nothing and a restarted tracker rebuilt from the store has the
same figures. `TrackerActor` is the thin, detached Ray singleton around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from actors.config import AUDIT_DB, DEFAULT_STATE_DIR, Config, ConfigError
from actors.core.contexts import DEFAULT_KEYS
from actors.core.performance import Performance
from actors.core.privacy import StoreText
from actors.core.records import FeedbackRecord
from actors.rpc.channel_server import ChannelServer
from actors.shells.placement import state_actor_options
from actors.stores import spend
from actors.stores.audit import AuditBackend, Record, Written, as_record, open_store
from actors.stores.lease import Fenced, Lease, LeaseRefused, Role, Sql
from actors.stores.pg import ENV_DB_PASSWORD, PgTarget, check_db_url, deployment_schema
from actors.stores.spend import TimeLike

DEFAULT_DB = f"{DEFAULT_STATE_DIR}/{AUDIT_DB}"
NAME, NAMESPACE = "tracker", "llm-router"
log = logging.getLogger(__name__)


def _section_errors(section: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join([section, *(str(p) for p in err["loc"])])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {msg.removeprefix('Value error, ')}")
    return f"invalid {section} configuration\n" + "\n".join(lines)


class TrackerSpec(BaseModel):
    """The `tracker:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_path: Path = Field(
        Path(DEFAULT_DB),
        validate_default=True,
        description="SQLite audit file; ~ expanded, relative paths resolved by the creating "
                    "process (the detached actor may run elsewhere).")
    db_url: str | None = Field(
        None, description="PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE) for a cluster: "
                          "the audit trail and the router's state then live there, not in "
                          "db_path. Never holds the password (see db_password_env).")
    db_password_env: str = Field(
        ENV_DB_PASSWORD, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the database password (on every node).")
    deployment: str = Field(
        "default", pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="The name this system's state is owned under (actors/stores/lease.py): one live "
                    "system per deployment and database. With PostgreSQL each name has its own "
                    "schema (`default`: public), so systems of different names share a database.")
    take_over: bool = Field(
        False, description="Claim the deployment's state even from a live owner (whose writes "
                           "are then refused): only once the other system is stopped.")
    lease_ttl_s: float = Field(
        15.0, gt=0, le=600, description="A lease whose holder sent no heartbeat for this long "
                                        "is taken over (heartbeats every quarter of it).")
    store_text: StoreText = Field(
        "full", description="Prompt/response text: as is, an HMAC-SHA256 only, or not at all "
                            "(the router's journal follows the same setting).")
    min_context_samples: int = Field(
        20, ge=1, description="Samples a context needs before its own figures are used.")
    window_size: int = Field(
        500, ge=10, description="Recent latencies kept per provider/context for p50/p95.")
    context_keys: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        DEFAULT_KEYS, min_length=1, description="Context entries that make a context key "
                                                "(for the router's estimates too).")
    max_contexts: int = Field(
        2000, ge=1, description="Contexts aggregated; least recently used are dropped.")
    max_tracked_requests: int = Field(
        100_000, ge=1, description="Recent request ids kept in memory for feedback.")

    @field_validator("db_path")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return Path(os.path.abspath(v.expanduser()))

    @field_validator("db_url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        return None if v is None else check_db_url(v)

    def connection(self) -> PgTarget:
        """Where the PostgreSQL store is (only with `db_url`)."""
        assert self.db_url is not None
        return PgTarget(self.db_url, self.db_password_env, deployment_schema(self.deployment))

    @classmethod
    def from_config(cls, config: Config | dict[str, Any] | None) -> TrackerSpec:
        """A loaded `Config` already holds the section, validated at load; a bare mapping
        (tests, tools) is validated here."""
        if isinstance(config, Config):
            return config.tracker
        try:
            return cls.model_validate(config or {})
        except ValidationError as exc:
            raise ConfigError(_section_errors("tracker", exc)) from None


def claim_lease(db: Sql, role: Role, spec: TrackerSpec, owner: str, where: str,
                postgres: bool, on_lost: Callable[[Fenced], None] | None = None) -> Lease:
    """Claim `role`'s lease of the deployment `spec` names and keep it beating."""
    lease = Lease(db, role, spec.deployment, owner, where=where, ttl_s=spec.lease_ttl_s,
                  take_over=spec.take_over, postgres=postgres)
    lease.claim()
    lease.keep(on_lost)
    return lease


class Tracker:
    """Audit store + performance aggregates. Not thread-safe: one owner calls it."""

    def __init__(self, spec: TrackerSpec | None = None, *, clock=time.time,
                 owner: str | None = None) -> None:
        """`owner` (the tracker actor's id): claim the deployment's tracker lease under it
        first (actors/stores/lease.py) — raises `LeaseRefused` if another live tracker holds it."""
        self.spec = spec or TrackerSpec()
        self._clock = clock
        self.store: AuditBackend = open_store(self.spec)
        self.lease: Lease | None = None
        if owner is not None:
            try:
                self.lease = claim_lease(self.store.sql(), Role.TRACKER, self.spec, owner,
                                         self.store.where, self.store.POSTGRES)
            except BaseException:
                self.store.close()
                raise
            self.store.fence = self.lease.fence
        self.perf = Performance(
            min_context_samples=self.spec.min_context_samples,
            window_size=self.spec.window_size,
            context_keys=self.spec.context_keys,
            max_tracked_requests=self.spec.max_tracked_requests,
            max_contexts=self.spec.max_contexts,
        )
        self.perf.rebuild_from(self.store)
        self.invalid = 0  # records dropped by validation since this process started

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
        self.store.close()

    # -- writes (persist, then apply; the actor runs persist in a thread) ---------------

    def validate(self, records: Iterable[Record | dict[str, Any]]) -> list[Record]:
        """The valid records. An invalid one is logged and counted but never fails its
        batch: the router re-sends unacknowledged batches, so one bad record would loop."""
        out: list[Record] = []
        for r in records:
            try:
                out.append(as_record(r))
            except ValidationError as exc:
                self.invalid += 1
                log.warning("dropping invalid record: %s", str(exc).replace("\n", " "))
        return out

    def persist(self, records: Iterable[Record | dict[str, Any]]) -> Written:
        return self.store.store(self.validate(records))

    def apply(self, written: Written) -> int:
        self.perf.apply(written, lookup=self.store)
        return written.stored

    def record_batch(self, records: Iterable[Record | dict[str, Any]]) -> int:
        """Store durably, then update the figures; returns how many records were new
        (duplicates of already-stored records are counted in `reconcile()`)."""
        return self.apply(self.persist(records))

    def check_feedback(
        self, request_id: str, score: float, ts: float | None = None
    ) -> FeedbackRecord:
        """The feedback record to store; raises for a bad score or an unknown request."""
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"feedback score must be within 0..1, got {score}")
        if not self.store.has_request(request_id):
            raise KeyError(f"unknown request id {request_id!r}: no request with this id recorded")
        return FeedbackRecord(request_id=request_id, ts=self._clock() if ts is None else ts,
                              score=score)

    def feedback(self, request_id: str, score: float, ts: float | None = None) -> None:
        """Attach a realized outcome (0..1) to a past request; the latest score counts."""
        self.record_batch([self.check_feedback(request_id, score, ts)])

    # -- answers ------------------------------------------------------------------------

    def performance(self, by_context: bool = False) -> pd.DataFrame:
        return self.perf.table(by_context)

    def provider_stats(
        self, context: dict[str, Any] | None = None, providers: Iterable[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Per provider, the figures policies rank by (context-specific once there are
        enough samples, global before; `source` says which)."""
        names = self.perf.providers if providers is None else providers
        return {p: self.perf.stats_for(p, context) for p in names}

    def costs(self, by: str = "hour", since: TimeLike = None,
              until: TimeLike = None, group_by: str = "provider") -> pd.DataFrame:
        """Spend per period, aggregated in SQL over `[since, until)` (default: recent),
        by provider or by user."""
        return spend.cost_summary(self.store, by, since, until, self._clock(), group_by)

    def cost_per_token(self, since: TimeLike = None, until: TimeLike = None) -> pd.DataFrame:
        return spend.cost_per_token(self.store, since, until, self._clock())

    def spend_since(self, ts: float, provider: str | None = None,
                    simulated: bool | None = None) -> float:
        """USD spent since unix time `ts` (the router seeds its budget windows with this,
        counting only spend of its own kind: real budgets never see simulated spend)."""
        return self.store.spend_since(ts, provider, simulated)

    def history(self, until: float, max_requests: int) -> list[Record]:
        """What a restarted router relearns its estimates from (actors/policy/learning.py)."""
        return self.store.history(until, max_requests)

    def audit(self, request_id: str) -> list[dict[str, Any]]:
        """The request's attempt rows, then its request row, then its feedback row if any."""
        rows = [{"kind": "attempt", **r} for r in self.store.attempts_for(request_id)]
        req = self.store.request(request_id)
        if req is not None:
            rows.append({"kind": "request", **req})
            fb = self.store.feedback_for(request_id)
            if fb is not None:
                rows.append({"kind": "feedback", **fb})
        if not rows:
            raise KeyError(f"unknown request id {request_id!r}: nothing recorded for it")
        return rows

    def reconcile(self) -> dict[str, int]:
        """Stored rows, ignored duplicates and rejected feedback (durable tallies), plus
        records dropped as invalid by this process."""
        return {**self.store.counts(), "invalid": self.invalid}


@ray.remote(num_cpus=0)
class TrackerActor(ChannelServer):
    """Detached singleton. Batches are written one at a time in a worker thread, so the
    event loop keeps answering in-memory queries while SQLite commits. The router sends its
    record batches over a channel (`_chan_handle`); `record` stays for other callers."""

    def __init__(self, spec: TrackerSpec | dict[str, Any] | None = None) -> None:
        # A restarted actor runs this again: the core rebuilds its figures from the store.
        if not isinstance(spec, TrackerSpec):
            spec = TrackerSpec.model_validate(spec or {})
        self._write = asyncio.Lock()  # FIFO: batches apply in the order they arrived
        self._refused: Exception | None = None
        try:
            self._core = Tracker(spec, owner=ray.get_runtime_context().get_actor_id() or "")
        except LeaseRefused as exc:  # another live system's tracker: refuse, via ready()
            self._refused = exc
            log.error("%s", exc)

    def ready(self) -> bool:
        """Answers once the actor is up (start-up waits for it, as for the others)."""
        if self._refused is not None:
            raise self._refused  # the caller kills this actor
        return True

    async def _chan_handle(self, records: list[Record | dict[str, Any]]) -> int:
        return await self.record(records)

    def release_lease(self) -> None:
        """Mark the tracker lease free before a deliberate stop (a successor need not wait
        for it to expire)."""
        if self._refused is None and self._core.lease is not None:
            self._core.lease.release()

    async def record(self, records: list[Record | dict[str, Any]]) -> int:
        async with self._write:
            written = await asyncio.to_thread(self._core.persist, records)
            return self._core.apply(written)

    async def feedback(self, request_id: str, score: float) -> None:
        async with self._write:
            rec = await asyncio.to_thread(self._core.check_feedback, request_id, score)
            written = await asyncio.to_thread(self._core.persist, [rec])
            self._core.apply(written)

    async def performance(self, by_context: bool = False) -> pd.DataFrame:
        return self._core.performance(by_context)

    async def provider_stats(
        self, context: dict[str, Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        return self._core.provider_stats(context)

    async def costs(self, by: str = "hour", since: TimeLike = None,
                    until: TimeLike = None, group_by: str = "provider") -> pd.DataFrame:
        return await asyncio.to_thread(self._core.costs, by, since, until, group_by)

    async def cost_per_token(self, since: TimeLike = None, until: TimeLike = None) -> pd.DataFrame:
        return await asyncio.to_thread(self._core.cost_per_token, since, until)

    async def spend_since(self, ts: float, provider: str | None = None,
                          simulated: bool | None = None) -> float:
        return await asyncio.to_thread(self._core.spend_since, ts, provider, simulated)

    async def audit(self, request_id: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._core.audit, request_id)

    async def history(self, until: float, max_requests: int) -> list[Record]:
        return await asyncio.to_thread(self._core.history, until, max_requests)

    async def reconcile(self) -> dict[str, int]:
        return await asyncio.to_thread(self._core.reconcile)


def get_or_create_tracker(config: Config | TrackerSpec | dict[str, Any] | None = None):
    """The cluster's one tracker, created on first use. An existing tracker keeps the
    settings it was started with. Record batches are idempotent, so a call in flight when
    the actor died is safely retried after its restart. It runs where `placement:` says
    (the head node by default), so its database stays where its restarts find it."""
    spec = config if isinstance(config, TrackerSpec) else TrackerSpec.from_config(config)
    return TrackerActor.options(
        name=NAME,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=3,
        **state_actor_options(config),
    ).remote(spec)
