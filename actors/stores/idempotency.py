"""Request ids are idempotency keys, as in payment APIs.

Within `idempotency.window_s` (default 24 h) of a request's outcome:

- the same id with the same request returns the stored outcome — the answer, or the error
  it ended with — without calling a provider or paying again (`trace.replayed` is true);
- the same id with a different request fails with `idempotency_conflict` (HTTP 409);
- a duplicate arriving while the original is in flight waits for the original's outcome
  (up to its own deadline) rather than being sent again.

"Same request" means the same messages, policy (the default one filled in), provider,
fallbacks, context, max_tokens, temperature, output kind and completion parameters (stop,
seed, tools, response_format, user…, when any is set); the deadline and priority may
differ. A streamed request claims its id instead of waiting (`claim` / `release`): a stored
outcome is replayed as a stream, an id in flight is a conflict (actors/routing/router_stream.py). The comparison uses a keyed hash (HMAC) of those, never the text itself.

Outcomes are kept in memory (the most recent `memory_entries`) and in a SQLite file in the
instance's state directory — or, with `tracker.db_url`, in PostgreSQL (`actors/stores/pg_state.py`,
read off the event loop) — so a restarted router still replays them. They are written off
the request path, in one transaction per `WRITE_DELAY_S` (20 ms) on a writer thread: a
router killed within those milliseconds of an answer forgets that outcome, and a duplicate
of it is then routed again — billed again, and recorded again (attempt rows name their
execution), so recorded spend still equals what was billed. What is on disk
follows `tracker.store_text`: with `full` the whole outcome (answer text included); with
`hash` or `none` only the hash and whether it succeeded — the answer itself then lives only
in memory, and a duplicate whose answer is no longer there (after a restart or once
`memory_entries` newer outcomes pushed it out) gets `idempotency_conflict` saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from actors.clients.base import PARAMS
from actors.core.errors import ErrorClass
from actors.stores.state import private_file

log = logging.getLogger(__name__)
MAX_ID_LENGTH = 128
_SAFE_ID = re.compile(r"[A-Za-z0-9._:~@/+=^-]{1,128}")
SAFE_ID_CHARS = "letters, digits and . _ : ~ @ / + = ^ -"
STORE_FILE = "idempotency.sqlite3"
#: How long a kept outcome may wait for the next group commit (it is replayed from memory
#: meanwhile); a router killed within it forgets those outcomes (see the module docstring).
WRITE_DELAY_S = 0.02
#: Longest a write waits for the records it answers for to be durable; then it is put off
#: to the next write (the outcomes stay replayable from memory meanwhile).
DURABLE_WAIT_S = 30.0


def safe_id(value: str) -> bool:
    """Whether `value` may be a request id: it travels in HTTP headers, logs and file names."""
    return _SAFE_ID.fullmatch(value) is not None


def _check_id(value: str) -> str:
    if not safe_id(value):
        raise ValueError(f"a request id is 1–{MAX_ID_LENGTH} of {SAFE_ID_CHARS} (no spaces, "
                         "quotes or control characters such as CR/LF)")
    return value


RequestId = Annotated[str, AfterValidator(_check_id)]


class IdempotencySpec(BaseModel):
    """The `idempotency:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(86400.0, gt=0, description="How long an outcome is replayed.")
    memory_entries: int = Field(5000, ge=0, description="Most recent outcomes kept in memory.")


class IdempotencyConflict(Exception):
    """The id was used for another request, or its outcome can no longer be replayed."""

    error_class = ErrorClass.IDEMPOTENCY_CONFLICT


def fingerprint(key: bytes, req: Any, policy: str) -> str:
    """Keyed hash of what makes two requests the same (see the module docstring); the
    context's keys in any order."""
    body = req.model_dump_json(include={"messages", "provider", "fallbacks", "max_tokens",
                                        "temperature", "output"})
    if getattr(req, "has_params", False):  # the completion parameters, when any is set
        body += req.model_dump_json(include=set(PARAMS), exclude_defaults=True)
    context = json.dumps(sorted(req.context.items()))
    return hmac.new(key, f"{policy}\n{context}\n{body}".encode(), hashlib.sha256).hexdigest()


@dataclass
class Entry:
    """One request's outcome as kept for replays. `outcome` is None when not kept."""

    fingerprint: str
    ts: float
    ok: bool
    outcome: Any = None  # the caller's object (in memory) or its JSON bytes (from disk)


class IdempotencyStore:
    """The SQLite side: one row per request id, purged past the window. Reads happen on the
    caller's thread, writes on the book's writer thread (WAL lets both proceed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_file(self.path)
        self._read = self._connect()
        self._write = self._connect()
        self._write.execute(
            "CREATE TABLE IF NOT EXISTS outcomes (request_id TEXT PRIMARY KEY, "
            "fingerprint TEXT NOT NULL, ts REAL NOT NULL, ok INTEGER NOT NULL, outcome BLOB)")
        self._write.execute("CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts)")

    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA busy_timeout=5000")
        return c

    def get(self, request_id: str) -> Entry | None:
        row = self._read.execute("SELECT fingerprint, ts, ok, outcome FROM outcomes "
                                 "WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else Entry(row[0], row[1], bool(row[2]), row[3])

    def put_many(self, rows: list[tuple[str, str, float, bool, bytes | None]]) -> None:
        c = self._write
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)", rows)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def purge(self, before: float) -> int:
        return self._write.execute("DELETE FROM outcomes WHERE ts < ?", (before,)).rowcount

    def count(self) -> int:
        return self._read.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]

    def close(self) -> None:
        self._read.close()
        self._write.close()


Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


class IdempotencyBook:
    """In-flight requests, recent outcomes and the durable store, for one router.

    `run(request_id, fingerprint, execute, wait_s)` is the whole protocol: it replays,
    refuses, waits for an original in flight, or executes and keeps the outcome. `encode` /
    `decode` turn an outcome (a result, or the exception it raised) into bytes for the disk;
    `encode` is None when outcomes must not be written (`store_text` hash / none).
    """

    def __init__(self, spec: IdempotencySpec, store: IdempotencyStore | None = None, *,
                 key: bytes = b"", kept: tuple[type[Exception], ...] = (),
                 encode: Encode | None = None, decode: Decode | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`key`: the HMAC key of fingerprints; `kept`: the exceptions that are a request's
        outcome (replayed like an answer)."""
        self.spec = spec
        self._key = key
        self._kept = kept
        self.store = store
        self._encode, self._decode = encode, decode
        self._clock = clock
        self._inflight: dict[str, tuple[str, asyncio.Future[None]]] = {}
        self._recent: OrderedDict[str, Entry] = OrderedDict()
        self._unwritten: dict[str, Entry] = {}  # kept, not yet committed to the store
        self._writer: asyncio.Future[None] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="idempotency") if store else None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="idempotency-read")
        self._last_purge = 0.0
        self.replays = 0
        # Awaited before outcomes are written: the records they answer for must be durable
        # first. Else a router lost between the two commits leaves an outcome that a re-send
        # replays while its audit rows are gone (the router sets the journal's commit here).
        self.durable_first: Callable[[], Awaitable[None]] | None = None

    def fingerprint(self, req: Any, policy: str) -> str:
        return fingerprint(self._key, req, policy)

    async def run(self, request_id: str, fp: str, execute: Callable[[], Awaitable[Any]],
                  wait_s: float | None = None, *, fresh: bool = False) -> tuple[Any, bool]:
        """`(outcome, replayed)`. The outcome is what `execute` returned or the `kept`
        exception it raised (returned, not raised: the caller marks replays first).
        `fresh`: the id was just generated, so no store can hold it (no lookup)."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while True:
            held = self._inflight.get(request_id)
            if held is None:
                break
            if held[0] != fp:
                raise IdempotencyConflict(
                    f"request id {request_id!r} is in use by another request in flight; "
                    "a request id names one request")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"request {request_id!r} is still in flight (sent "
                                   "earlier with the same id); its outcome will be replayed")
            try:  # the original's outcome, then look again (it may have been abandoned)
                await asyncio.wait_for(asyncio.shield(held[1]), left)
            except TimeoutError:
                continue
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = (fp, done)  # before a lookup that may await a database
        try:
            entry = None if fresh else await self._lookup(request_id)
            if entry is not None:
                return self._replay(request_id, fp, entry), True
            try:
                outcome: Any = await execute()
            except self._kept as exc:
                outcome = exc  # anything else (a bug, a cancellation) is not an outcome
            ok = not isinstance(outcome, BaseException)
            self._keep(request_id, Entry(fp, self._clock(), ok, outcome))
        finally:
            del self._inflight[request_id]
            done.set_result(None)
        return outcome, False

    async def claim(self, request_id: str, fp: str, *, fresh: bool = False) -> Any | None:
        """For a streamed request, which cannot wait for an original and replay midway:
        the stored outcome to replay (returned), or None once the id is claimed (call
        `release`). An id in flight is an IdempotencyConflict. `fresh`: as for `run`."""
        if request_id in self._inflight:
            raise IdempotencyConflict(f"request id {request_id!r} is in flight; a streamed "
                                      "request cannot share it (retry once it finished)")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = (fp, done)  # before a lookup that may await a database
        if fresh:
            return None
        try:
            entry = await self._lookup(request_id)
        except BaseException:
            self.release(request_id, fp, None)
            raise
        if entry is None:
            return None  # claimed: the caller streams it, then releases
        try:
            return self._replay(request_id, fp, entry)
        finally:
            self.release(request_id, fp, None)

    def release(self, request_id: str, fp: str, outcome: Any | None) -> None:
        """End a claim; `outcome` (a result or a kept error; None when the stream was cut)
        is kept for replays like `run`'s."""
        held = self._inflight.pop(request_id, None)
        if outcome is not None:
            ok = not isinstance(outcome, BaseException)
            self._keep(request_id, Entry(fp, self._clock(), ok, outcome))
        if held is not None and not held[1].done():
            held[1].set_result(None)

    async def _lookup(self, request_id: str) -> Entry | None:
        entry = self._recent.get(request_id) or self._unwritten.get(request_id)
        if entry is None and self.store is not None:
            if getattr(self.store, "remote", False):  # a database across the network
                entry = await asyncio.get_running_loop().run_in_executor(
                    self._reader, self.store.get, request_id)
            else:
                entry = self.store.get(request_id)
        if entry is not None and entry.ts < self._clock() - self.spec.window_s:
            return None  # past the window: a new request that happens to reuse the id
        return entry

    def _replay(self, request_id: str, fp: str, entry: Entry) -> Any:
        if entry.fingerprint != fp:
            raise IdempotencyConflict(
                f"request id {request_id!r} was already used for a different request "
                f"(within the last {self.spec.window_s:g} s); a request id names one request — "
                "send this one under a new id")
        outcome = entry.outcome
        if isinstance(outcome, bytes) and self._decode is not None:
            outcome = self._decode(outcome)
        if outcome is None:
            raise IdempotencyConflict(
                f"request {request_id!r} was already {'answered' if entry.ok else 'refused'}, "
                "but its outcome is no longer kept (tracker.store_text keeps answers off disk "
                "and this router restarted or has since kept newer ones); send it under a new "
                "id to ask again")
        self.replays += 1
        return outcome

    def _keep(self, request_id: str, entry: Entry) -> None:
        if self.spec.memory_entries:
            self._recent[request_id] = entry
            self._recent.move_to_end(request_id)
            while len(self._recent) > self.spec.memory_entries:
                self._recent.popitem(last=False)
        if self.store is None:
            return
        self._unwritten[request_id] = entry
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_soon())

    async def _write_soon(self) -> None:
        """Group commit off the request path: whatever was kept in the next WRITE_DELAY_S
        goes to disk in one transaction, on the writer thread."""
        await asyncio.sleep(WRITE_DELAY_S)
        await self.flush()

    async def flush(self) -> None:
        """Commit every kept outcome now (the router's `flush` waits for this too)."""
        loop = asyncio.get_running_loop()
        while self._unwritten and self.store is not None:
            batch = list(self._unwritten.items())
            if self.durable_first is not None:
                try:
                    await asyncio.wait_for(self.durable_first(), DURABLE_WAIT_S)
                except Exception as exc:  # kept in memory; tried again at the next write
                    log.warning("%d idempotency outcomes not stored: their records are not "
                                "durable yet (%s)", len(batch), exc or type(exc).__name__)
                    return
            try:
                await loop.run_in_executor(self._pool, self._write_batch, batch)
            except Exception as exc:  # still replayed from memory; say it loudly
                log.warning("could not store %d idempotency outcomes: %s", len(batch), exc)
                return
            for rid, entry in batch:
                if self._unwritten.get(rid) is entry:
                    del self._unwritten[rid]

    def _write_batch(self, items: list[tuple[str, Entry]]) -> None:
        """On the writer thread: encode (off the event loop), insert, purge now and then."""
        assert self.store is not None
        enc = self._encode
        self.store.put_many([(rid, e.fingerprint, e.ts, e.ok,
                              enc(e.outcome) if enc is not None else None)
                             for rid, e in items])
        now = self._clock()
        if now - self._last_purge > 60.0:
            self._last_purge = now
            self.store.purge(now - self.spec.window_s)

    def close(self) -> None:
        """Write what is still unwritten, then close (from outside the event loop)."""
        self._reader.shutdown(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.store is not None:
            if self._unwritten:
                self._write_batch(list(self._unwritten.items()))
                self._unwritten.clear()
            self.store.close()
