"""The router's journal in PostgreSQL: unacknowledged records survive losing the node.

On one machine the journal is a file (`actors/stores/journal.py`): a killed router's page cache
survives, a lost node's does not. With `tracker.db_url` the journal is the `router_journal`
table instead. Appending stays off the request path — `append` queues the entry and a
writer thread commits whatever is queued in one transaction (a group commit: at high
concurrency one commit carries many requests) — and `synced()` lets the router answer only
once that commit holds the request's records (`router.journal_sync`, on by default with
PostgreSQL): then losing the router's node loses no record of an answered request.
Acknowledged entries (the tracker committed them) are deleted by the same thread.

Journal commits are asynchronous on the server (`synchronous_commit = off` for the
journal's own session only): the commit returns once the database server holds the entry, without
waiting for its WAL flush to disk (the server flushes within 3 × `wal_writer_delay`, 0.6 s
by default). What the journal guards against is losing the router's node, and for that the
entry being on the server is enough; waiting for the server's disk would cost every answer
an fsync (measured: BENCHMARKS.md). Only a crash of the database server itself within that
fraction of a second could lose journal entries — the audit trail's own commits (the
tracker's) stay fully synchronous.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from actors.stores.journal import ADAPTER, Record, encode_entry
from actors.stores.lease import Fence, Fenced
from actors.stores.pg import PgSession, PgTarget

log = logging.getLogger(__name__)
CHUNK = 1000  # entries per INSERT statement


class PgJournal:
    """`Journal`'s interface (`seq`, `append`, `ack`, `pending`, `close`) plus `synced()`."""

    def __init__(self, target: PgTarget, fence: Fence | None = None,
                 on_fenced: Callable[[Fenced], None] | None = None) -> None:
        """`fence`: the router's lease; every commit checks it in the same statement, so a
        replaced router's entries never reach the table (`on_fenced` is told, once)."""
        # its own session, with asynchronous commits (see the module docstring)
        self.db = PgSession(target, settings=("SET synchronous_commit = off",))
        self.fence, self._on_fenced = fence, on_fenced
        self.fenced: Fenced | None = None
        with self.db.lock:
            self.db.script("CREATE TABLE IF NOT EXISTS router_journal "
                           "(seq BIGINT PRIMARY KEY, records TEXT NOT NULL)")
            top = self.db.fetch("SELECT COALESCE(MAX(seq), 0) AS seq FROM router_journal")
        self.seq = int(top[0]["seq"])
        self.committed = self.seq
        self._queue: list[tuple[int, str]] = []
        self._acked: list[int] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._cond = threading.Condition()
        self._closing = False
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="pg-journal", daemon=True)
        self._thread.start()

    def append(self, records: Iterable[Any]) -> int:
        """Queue one request's records for the next commit; returns their sequence number."""
        self.seq += 1
        with self._cond:
            self._queue.append((self.seq, encode_entry(self.seq, records)))
            self._cond.notify()
        return self.seq

    def ack(self, seqs: Iterable[int]) -> None:
        """The tracker committed these: delete them (on the writer thread)."""
        with self._cond:
            self._acked.extend(seqs)
            self._cond.notify()

    async def synced(self) -> None:
        """Return once every entry appended so far is committed (raises `Fenced` once this
        router was replaced: its entries are never committed)."""
        if self.fenced is not None:
            raise self.fenced
        target = self.seq
        if self.committed >= target:
            return
        fut = asyncio.get_running_loop().create_future()
        with self._cond:
            if self.committed >= target:
                return
            self._waiters.append((target, fut))
        await fut

    def pending(self) -> list[tuple[int, list[Record]]]:
        """Committed entries not yet acknowledged, in order."""
        with self.db.lock:
            rows = self.db.fetch("SELECT seq, records FROM router_journal ORDER BY seq")
        return [(int(r["seq"]), ADAPTER.validate_python(json.loads(r["records"])["records"]))
                for r in rows]

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._acked or self._closing):
                    self._cond.wait()
                queue, self._queue = self._queue, []
                acked, self._acked = self._acked, []
                if self._closing and not queue and not acked:
                    return
            try:  # one statement each (one round trip, atomic); inserts before deletes
                with self.db.lock:
                    for i in range(0, len(queue), CHUNK):
                        self._insert(queue[i:i + CHUNK])
                    if acked:
                        self._delete(acked)
            except Fenced as exc:  # replaced: nothing more of ours may be written
                self._fence(exc)
                return
            except Exception as exc:  # keep them queued and try again; waiters keep waiting
                log.warning("journal commit failed (%s); retrying", exc)
                self.error = exc
                with self._cond:
                    self._queue[:0], self._acked[:0] = queue, acked
                    self._cond.wait(0.5)
                continue
            self.error = None
            if queue:
                self._release(queue[-1][0])

    def _insert(self, part: list[tuple[int, str]]) -> None:
        values = [v for row in part for v in row]
        if self.fence is None:
            self.db.exec("INSERT INTO router_journal (seq, records) VALUES "
                         + ", ".join(["(?, ?)"] * len(part)) + " ON CONFLICT DO NOTHING", values)
            return
        rows = ", ".join(["(?::bigint, ?::text)"] * len(part))
        self._fenced(f"ins AS (INSERT INTO router_journal (seq, records) SELECT v.seq, v.records "
                     f"FROM (VALUES {rows}) AS v (seq, records) WHERE (SELECT epoch FROM lease) "
                     "= ? ON CONFLICT DO NOTHING)", values)

    def _delete(self, acked: list[int]) -> None:
        if self.fence is None:
            self.db.exec("DELETE FROM router_journal WHERE seq = ANY(?)", (acked,))
            return
        self._fenced("del AS (DELETE FROM router_journal WHERE seq = ANY(?) "
                     "AND (SELECT epoch FROM lease) = ?)", [acked])

    def _fenced(self, write: str, params: list[Any]) -> None:
        """One statement: read the lease's epoch under KEY SHARE (a claim waits for us),
        write only if it is still ours, and say which epoch it was."""
        assert self.fence is not None
        rows = self.db.fetch(f"WITH lease AS ({self.fence.sql}), {write} "
                             "SELECT (SELECT epoch FROM lease) AS epoch",
                             [self.fence.role.value, *params, self.fence.epoch])
        epoch = rows[0]["epoch"]
        self.fence.verify(None if epoch is None else int(epoch))

    def _fence(self, exc: Fenced) -> None:
        log.error("router journal: %s", exc)
        self.fenced = self.error = exc
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            fut.get_loop().call_soon_threadsafe(_fail, fut, exc)
        if self._on_fenced is not None:
            self._on_fenced(exc)

    def _release(self, upto: int) -> None:
        with self._cond:
            self.committed = max(self.committed, upto)
            ready = [f for t, f in self._waiters if t <= self.committed]
            self._waiters = [(t, f) for t, f in self._waiters if t > self.committed]
        for fut in ready:
            fut.get_loop().call_soon_threadsafe(_done, fut)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=10)
        self.db.close()


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
