"""Who owns a deployment's state: a lease row per stateful actor, with an epoch that fences.

Two systems pointed at one database (two Ray clusters, `llm-router serve` started twice)
would share the router's journal, budget state and idempotency outcomes and silently
clobber each other. So each stateful actor (`router`, `tracker`) claims its role's row of
`llm_router_lease` in the database it keeps its state in, under the deployment name
(`tracker.deployment`), with an owner id (its Ray actor id: the same across Ray's restarts
of it), an epoch and a heartbeat:

- nobody holds it, the holder released it, or its heartbeat is older than the TTL: claimed;
- the same owner holds it (Ray restarted the actor, e.g. after losing its node): claimed at
  once with the next epoch — no waiting for the old process's heartbeat to expire;
- another owner with a live heartbeat: refused at start-up (`LeaseRefused`, naming the
  database, the deployment and the way out), unless `tracker.take_over` says to.

Every write of the state (journal commits, audit batches, budget overrides, idempotency
outcomes) checks its epoch inside its own statement or transaction (`Fence`): a zombie of
an older epoch gets `Fenced` instead of clobbering its successor's state. The heartbeat is a
timer thread, never on the request path. `decide` is the rule, a pure function.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Protocol

from actors.config import ConfigError

log = logging.getLogger(__name__)
TABLE = "llm_router_lease"
CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (role TEXT PRIMARY KEY, deployment TEXT NOT NULL, "
          "owner TEXT NOT NULL, epoch BIGINT NOT NULL, heartbeat DOUBLE PRECISION NOT NULL, "
          "host TEXT NOT NULL, pid BIGINT NOT NULL, since DOUBLE PRECISION NOT NULL)")
#: Row-lock clauses (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers). A
#: fenced write holds KEY SHARE on the lease row, so a claim (FOR UPDATE) waits for it to
#: commit, while heartbeats (plain UPDATEs: NO KEY UPDATE) never block it.
PG_CLAIM, PG_FENCE = " FOR UPDATE", " FOR KEY SHARE"


class Role(StrEnum):
    ROUTER = "router"
    TRACKER = "tracker"


class Verdict(Enum):
    """What `decide` says about a claim."""

    FREE = "never held"
    RELEASED = "released by its holder"
    DEAD = "its holder's process is gone"
    RESTART = "held by this actor's previous process"
    STALE = "its holder stopped sending heartbeats"
    TAKEN_OVER = "taken over explicitly (tracker.take_over)"
    REFUSED = "held by another live owner"


class LeaseRefused(ConfigError):
    """Another live system owns this deployment's state (a configuration problem: choose
    another deployment name or database, or take over once the other is stopped)."""


class Fenced(RuntimeError):
    """A write from an epoch that is no longer the lease's: this process was replaced."""


class Sql(Protocol):
    """What a lease needs of a connection (`PgSession`, or an audit store's `sql()`)."""

    lock: Any

    def fetch(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]: ...

    def exec(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int: ...

    def script(self, sql: str) -> None: ...

    def transaction(self) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Holder:
    """A lease row as read."""

    deployment: str
    owner: str
    epoch: int
    heartbeat: float
    host: str
    pid: int
    since: float

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        beat = f"last heartbeat {now - self.heartbeat:.1f} s ago" if self.heartbeat else \
            "released"
        return (f"owner {self.owner}, pid {self.pid} on {self.host}, epoch {self.epoch}, "
                f"since {since}, {beat}")


def decide(held: Holder | None, *, owner: str, now: float, ttl_s: float,
           take_over: bool, holder_gone: bool = False) -> Verdict:
    """May `owner` claim a lease now held as `held`? (The rule; no I/O.) `holder_gone`: the
    holder ran on this host and its process no longer exists."""
    if held is None:
        return Verdict.FREE
    if held.owner == owner:
        return Verdict.RESTART
    if held.heartbeat <= 0:
        return Verdict.RELEASED
    if holder_gone:
        return Verdict.DEAD
    if now - held.heartbeat > ttl_s:
        return Verdict.STALE
    return Verdict.TAKEN_OVER if take_over else Verdict.REFUSED


@dataclass(frozen=True)
class Fence:
    """The epoch this process holds a role's lease at; writes check it (see module doc)."""

    role: Role
    epoch: int
    lock_clause: str = ""  # PG_FENCE on PostgreSQL

    @property
    def sql(self) -> str:
        """The lease's current epoch, read under the fence's row lock (one `?`: the role)."""
        return f"SELECT epoch FROM {TABLE} WHERE role = ?{self.lock_clause}"

    def check(self, fetch: Callable[..., list[dict[str, Any]]]) -> None:
        """Raise `Fenced` unless this epoch still holds; call inside the write's transaction."""
        rows = fetch(self.sql, (self.role.value,))
        self.verify(int(rows[0]["epoch"]) if rows else None)

    def verify(self, current: int | None) -> None:
        if current != self.epoch:
            raise Fenced(f"the {self.role.value} lease moved to epoch {current} (this process "
                         f"holds epoch {self.epoch}): another process took this deployment's "
                         "state over; this one's writes are refused")


class Lease:
    """One role's lease: claimed at start, kept alive by a heartbeat thread, released at stop."""

    def __init__(self, db: Sql, role: Role, deployment: str, owner: str, *, where: str,
                 ttl_s: float = 15.0, take_over: bool = False, postgres: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        """`where` names the database in messages (never a password); `owner`: the actor id
        (empty: a fresh one, i.e. never a restart of anything)."""
        self.db, self.role, self.deployment = db, role, deployment
        self.owner = owner or f"process-{uuid.uuid4().hex[:12]}"
        self.where, self.ttl_s, self.take_over = where, ttl_s, take_over
        self.postgres, self.clock = postgres, clock
        self.fence: Fence | None = None
        self.lost: Fenced | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with self.db.lock:
            _create(self.db)

    def claim(self, wait_s: float | None = None) -> Fence:
        """Claim the lease (waiting up to `wait_s`, default the TTL, for a live holder's
        heartbeat to expire — a crashed predecessor's does), or raise `LeaseRefused`."""
        deadline = time.monotonic() + (self.ttl_s if wait_s is None else wait_s)
        while True:
            verdict, held = self._try_claim()
            if verdict is not Verdict.REFUSED:
                break
            if time.monotonic() >= deadline:
                assert held is not None
                raise LeaseRefused(self._refusal(held))
            time.sleep(min(0.25, max(0.01, self.ttl_s / 20)))
        assert self.fence is not None
        note = f"{self.role.value} lease of deployment {self.deployment!r} in {self.where}: " \
               f"epoch {self.fence.epoch} ({verdict.value})"
        if verdict in (Verdict.STALE, Verdict.TAKEN_OVER):
            log.warning("%s; previous holder: %s", note, held.describe(self.clock()) if held
                        else "?")
        else:
            log.info("%s", note)
        return self.fence

    def _try_claim(self) -> tuple[Verdict, Holder | None]:
        now = self.clock()
        lock = PG_CLAIM if self.postgres else ""
        with self.db.lock, self.db.transaction():
            rows = self.db.fetch(f"SELECT * FROM {TABLE} WHERE role = ?{lock}", (self.role.value,))
            held = Holder(**{k: rows[0][k] for k in Holder.__dataclass_fields__}) if rows else None
            verdict = decide(held, owner=self.owner, now=now, ttl_s=self.ttl_s,
                             take_over=self.take_over,
                             holder_gone=held is not None and _gone(held))
            if verdict is Verdict.REFUSED:
                return verdict, held
            epoch = (held.epoch if held else 0) + 1
            self.db.exec(
                f"INSERT INTO {TABLE} (role, deployment, owner, epoch, heartbeat, host, pid, "
                "since) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (role) DO UPDATE SET "
                "deployment = excluded.deployment, owner = excluded.owner, "
                "epoch = excluded.epoch, heartbeat = excluded.heartbeat, host = excluded.host, "
                "pid = excluded.pid, since = excluded.since",
                (self.role.value, self.deployment, self.owner, epoch, now, socket.gethostname(),
                 os.getpid(), now))
        self.fence = Fence(self.role, epoch, PG_FENCE if self.postgres else "")
        return verdict, held

    def _refusal(self, held: Holder) -> str:
        other = f" (deployment {held.deployment!r})" if held.deployment != self.deployment else ""
        return (
            f"the state of llm-router deployment {self.deployment!r} in {self.where} is owned "
            f"by another live {self.role.value}{other}: {held.describe(self.clock())}. Two "
            "systems never share one deployment's state (they would replay each other's "
            "journal and double-count budgets). Either give this system its own: set "
            "`tracker.deployment: <name>` (with PostgreSQL: its own schema in the same "
            "database), or another database / state directory; or, once the other system is "
            "stopped, start this one once with `tracker.take_over: true` — the other's writes "
            f"are then refused. A holder that stops heartbeating for {self.ttl_s:g} s is "
            "taken over without asking.")

    def beat(self) -> bool:
        """Refresh the heartbeat; False (and `lost` set) once another epoch holds the lease."""
        assert self.fence is not None
        with self.db.lock:
            n = self.db.exec(f"UPDATE {TABLE} SET heartbeat = ? WHERE role = ? AND epoch = ?",
                             (self.clock(), self.role.value, self.fence.epoch))
        if n == 0:
            try:
                with self.db.lock:
                    self.fence.check(self.db.fetch)
            except Fenced as exc:
                self.lost = exc
                return False
        return True

    def keep(self, on_lost: Callable[[Fenced], None] | None = None,
             every_s: float | None = None) -> None:
        """Heartbeat on a timer thread (every TTL/4 by default) until `release`."""
        every = every_s if every_s is not None else max(0.05, self.ttl_s / 4)
        self._thread = threading.Thread(target=self._keep, args=(on_lost, every),
                                        name=f"lease-{self.role.value}", daemon=True)
        self._thread.start()

    def _keep(self, on_lost: Callable[[Fenced], None] | None, every: float) -> None:
        while not self._stop.wait(every):
            try:
                if not self.beat():
                    log.error("%s", self.lost)
                    if on_lost is not None and self.lost is not None:
                        on_lost(self.lost)
                    return
            except Exception as exc:  # the database unreachable: try again next beat
                log.warning("%s lease heartbeat failed: %s", self.role.value, exc)

    def release(self) -> None:
        """Stop heartbeating and mark the lease free (if still ours), so a successor of
        another owner need not wait for it to expire."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.fence is None or self.lost is not None:
            return
        try:
            with self.db.lock:
                self.db.exec(f"UPDATE {TABLE} SET heartbeat = 0 WHERE role = ? AND epoch = ?",
                             (self.role.value, self.fence.epoch))
        except Exception as exc:  # it expires by itself
            log.warning("could not release the %s lease: %s", self.role.value, exc)


def _gone(held: Holder) -> bool:
    """Whether the holder ran on this host and its process has ended (then there is no
    need to wait for its heartbeat to expire: a local restart takes over at once)."""
    if held.host != socket.gethostname() or held.pid == os.getpid():
        return False
    try:
        os.kill(held.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _create(db: Sql) -> None:
    """The lease table; two actors creating it at once is fine (one of them wins)."""
    try:
        db.script(CREATE)
    except Exception:
        if not _exists(db):
            raise


def _exists(db: Sql) -> bool:
    try:
        db.fetch(f"SELECT 1 FROM {TABLE} WHERE 1 = 0")
        return True
    except Exception:
        return False


def rows(db: Sql) -> Iterator[Holder]:
    """Every lease row (status and tests)."""
    with db.lock:
        found = db.fetch(f"SELECT * FROM {TABLE} ORDER BY role")
    for r in found:
        yield Holder(**{k: r[k] for k in Holder.__dataclass_fields__})
