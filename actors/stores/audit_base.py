"""The audit store's interface and every rule it keeps, whatever database holds it.

One schema (`SCHEMA`, written in SQLite's words; each backend translates the types it
names) and one set of queries, with `?` placeholders, run by both backends: SQLite
(`actors/stores/audit.py`, the embedded default) and PostgreSQL (`actors/stores/audit_pg.py`, for
clusters). A backend supplies only a connection: `_fetch`, `_exec` and `_transaction`.

The promise is the same on both: one batch is one transaction, so the commit *is* the
acknowledgement, and every table has an idempotency key, so a batch re-sent after a tracker
crash never duplicates rows: attempts ``(request_id, execution, attempt, provider)``,
requests ``request_id`` (exactly one terminal outcome per request), feedback
``request_id`` (the latest wins). `execution` tells a re-sent copy of an attempt (same
execution: ignored) from an attempt of a request routed again after its router died
(another execution: billed, so kept).

Cost queries are in actors/stores/audit_spend.py (`SpendQueries`, a base of `AuditBackend`).
A column added to a record later goes into `ADDED_COLUMNS` (one place): both backends add
it to a database written by an earlier version when they open it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from actors.core.privacy import TextPolicy
from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord, WarningRecord
from actors.stores.audit_spend import SpendQueries, quoted
from actors.stores.lease import Fence

#: error_class of a placeholder terminal row written by a caller whose router died mid-request.
UNKNOWN_OUTCOME = "unknown_outcome"
Record = AttemptRecord | RequestRecord | FeedbackRecord | WarningRecord
_RECORD: TypeAdapter[Record] = TypeAdapter(Annotated[Record, Field(discriminator="kind")])

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL, attempt INTEGER NOT NULL, provider TEXT NOT NULL,
    ts REAL NOT NULL, model TEXT NOT NULL, policy TEXT NOT NULL, context TEXT NOT NULL,
    ok INTEGER NOT NULL, error_class TEXT, error TEXT, status INTEGER,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    latency_s REAL NOT NULL, confidence REAL, prompt TEXT, response TEXT,
    simulated INTEGER NOT NULL DEFAULT 0, execution TEXT NOT NULL DEFAULT '',
    "user" TEXT, cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    UNIQUE (request_id, execution, attempt, provider)
);
-- covering index: budget checks sum recent spend without touching the wide rows
CREATE INDEX IF NOT EXISTS attempts_spend ON attempts (ts, provider, cost_usd);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL, policy TEXT NOT NULL, context TEXT NOT NULL,
    provider TEXT, model TEXT, ok INTEGER NOT NULL, error_class TEXT, error TEXT,
    attempts INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, latency_s REAL NOT NULL, confidence REAL,
    quality_target REAL, explored INTEGER NOT NULL DEFAULT 0,
    simulated INTEGER NOT NULL DEFAULT 0, "user" TEXT,
    cached INTEGER NOT NULL DEFAULT 0, saved_usd REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, score REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS warnings (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, scope TEXT NOT NULL, message TEXT NOT NULL,
    UNIQUE (ts, scope, message)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

#: Columns newer than a table's first release: table → name → declaration (SQLite words).
#: Names are quoted: `user` is a reserved word in PostgreSQL (unquoted, it is the session's).
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "requests": {"quality_target": "REAL", "explored": "INTEGER NOT NULL DEFAULT 0",
                 '"user"': "TEXT", "cached": "INTEGER NOT NULL DEFAULT 0",
                 "saved_usd": "REAL NOT NULL DEFAULT 0"},
    "attempts": {'"user"': "TEXT", "cached_input_tokens": "INTEGER NOT NULL DEFAULT 0",
                 "cache_write_tokens": "INTEGER NOT NULL DEFAULT 0",
                 "reasoning_tokens": "INTEGER NOT NULL DEFAULT 0",
                 "usage_estimated": "INTEGER NOT NULL DEFAULT 0"},
}
ATTEMPT_COLS = [n for n in AttemptRecord.model_fields if n != "kind"]
REQUEST_COLS = [n for n in RequestRecord.model_fields if n != "kind"]
_FLAGS = ("ok", "explored", "simulated", "usage_estimated", "cached")


def as_record(obj: Record | dict[str, Any]) -> Record:
    """Accept a record model or its dict (as sent over the wire; `kind` picks the type)."""
    if isinstance(obj, AttemptRecord | RequestRecord | FeedbackRecord):
        return obj
    return _RECORD.validate_python(obj)


@dataclass(frozen=True)
class StoreSql:
    """A store's connection primitives under its lock's name (`actors.stores.lease.Sql`)."""

    lock: Any
    fetch: Callable[..., list[dict[str, Any]]]
    exec: Callable[..., int]
    script: Callable[[str], None]
    transaction: Callable[[], AbstractContextManager[None]]


@dataclass
class Written:
    """What one committed batch changed; the tracker feeds only this to its aggregates."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    feedback: list[tuple[FeedbackRecord, float | None]] = field(default_factory=list)
    """Each stored feedback with the score it replaced (None if it was the first)."""
    duplicates: int = 0
    rejected: int = 0
    """Feedback for a request id the store has never seen."""

    @property
    def stored(self) -> int:
        return len(self.attempts) + len(self.requests) + len(self.feedback)


class AuditBackend(SpendQueries):
    """The store's interface and rules over one connection guarded by a lock.

    Subclasses set `ROWID` (the column giving write order to tables keyed by text) and
    `PERIOD` (SQL for the start of `ts`'s period, two `?`: the period's seconds twice), and
    implement the three primitives, each called with the lock held.
    """

    ROWID = "rowid"
    PERIOD = "CAST(ts / ? AS INTEGER) * ?"
    POSTGRES = False
    text: TextPolicy
    fence: Fence | None = None
    """Set once the tracker holds its lease: every batch checks it in its transaction, so a
    replaced tracker's writes are refused (actors/stores/lease.py)."""

    def __init__(self, text: TextPolicy) -> None:
        self.text = text
        self.store_text = text.mode
        self._lock = threading.Lock()

    def sql(self) -> StoreSql:
        """This store's connection as `actors/stores/lease.py` uses it (the lease lives here)."""
        return StoreSql(self._lock, self._fetch, self._exec, self._script, self._transaction)

    @property
    def where(self) -> str:
        """The database, for messages (never a password)."""
        raise NotImplementedError

    # -- what a backend supplies ---------------------------------------------------------

    def _fetch(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _exec(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        """Commit on leaving, roll back on an exception."""
        raise NotImplementedError

    def _script(self, sql: str) -> None:
        """Statements without parameters (schema creation)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- writes -------------------------------------------------------------------------

    def write_batch(self, records: Iterable[Record | dict[str, Any]]) -> int:
        """Store a batch in one transaction; returns how many records were new."""
        return self.store(records).stored

    def store(self, records: Iterable[Record | dict[str, Any]]) -> Written:
        """Like `write_batch`, but says exactly what changed (duplicates are skipped)."""
        recs = [as_record(r) for r in records]
        out = Written()
        with self._lock, self._transaction():
            if self.fence is not None:
                self.fence.check(self._fetch)
            for r in recs:
                if isinstance(r, AttemptRecord):
                    if self._insert_attempt(r):
                        out.attempts.append(r)
                    else:
                        out.duplicates += 1
                elif isinstance(r, RequestRecord):
                    if self._insert_request(r):
                        out.requests.append(r)
                    else:
                        out.duplicates += 1
                elif isinstance(r, WarningRecord):
                    self._exec("INSERT INTO warnings (ts, scope, message) VALUES (?, ?, ?) "
                               "ON CONFLICT DO NOTHING", (r.ts, r.scope, r.message))
                else:
                    self._upsert_feedback(r, out)
            self._bump("duplicates", out.duplicates)
            self._bump("rejected_feedback", out.rejected)
        return out

    def _insert(self, table: str, cols: list[str], row: dict[str, Any]) -> bool:
        marks = ", ".join("?" for _ in cols)
        return self._exec(f"INSERT INTO {table} ({quoted(cols)}) VALUES ({marks}) "
                          "ON CONFLICT DO NOTHING", _values(row, cols)) == 1

    def _insert_attempt(self, r: AttemptRecord) -> bool:
        row = r.model_dump(exclude={"kind"})
        row["context"] = _ctx(r.context)
        row["prompt"], row["response"] = self.text.apply(r.prompt), self.text.apply(r.response)
        return self._insert("attempts", ATTEMPT_COLS, row)

    def _insert_request(self, r: RequestRecord) -> bool:
        row = r.model_dump(exclude={"kind"})
        row["context"] = _ctx(r.context)
        if self._insert("requests", REQUEST_COLS, row):
            return True
        if r.error_class != UNKNOWN_OUTCOME:
            # A caller that lost its router wrote a placeholder; the real outcome (replayed
            # from the router's journal) replaces it. Still exactly one row per request.
            cols = [k for k in REQUEST_COLS if k != "request_id"]
            sets = ", ".join(f'"{k}" = ?' for k in cols)
            return self._exec(
                f"UPDATE requests SET {sets} WHERE request_id = ? AND error_class = ?",
                [*_values(row, cols), r.request_id, UNKNOWN_OUTCOME]) == 1
        return False

    def _upsert_feedback(self, r: FeedbackRecord, out: Written) -> None:
        if not self._fetch("SELECT 1 FROM requests WHERE request_id = ?", (r.request_id,)):
            out.rejected += 1
            return
        old = self._fetch("SELECT ts, score FROM feedback WHERE request_id = ?", (r.request_id,))
        if not old:
            self._exec("INSERT INTO feedback (request_id, ts, score) VALUES (?, ?, ?)",
                       (r.request_id, r.ts, r.score))
            out.feedback.append((r, None))
        elif r.ts < old[0]["ts"] or (r.ts == old[0]["ts"] and r.score == old[0]["score"]):
            out.duplicates += 1  # a re-sent or stale score; the latest one stays
        else:
            self._exec("UPDATE feedback SET ts = ?, score = ? WHERE request_id = ?",
                       (r.ts, r.score, r.request_id))
            out.feedback.append((r, old[0]["score"]))

    def _bump(self, key: str, n: int) -> None:
        if n:
            self._exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                       "DO UPDATE SET value = meta.value + excluded.value", (key, n))

    # -- queries ------------------------------------------------------------------------

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [self._row(r) for r in self._fetch(sql, params)]

    def _row(self, d: dict[str, Any]) -> dict[str, Any]:
        d.pop(self.ROWID, None)
        if "context" in d:
            d["context"] = json.loads(d["context"])
        for flag in _FLAGS:
            if flag in d:
                d[flag] = bool(d[flag])
        return d

    def attempts_for(self, request_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM attempts WHERE request_id = ? ORDER BY attempt, id",
                         (request_id,))

    def request(self, request_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def feedback_for(self, request_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM feedback WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def warnings(self, since: float | None = None) -> list[dict[str, Any]]:
        return self._all("SELECT ts, scope, message FROM warnings WHERE ts >= ? ORDER BY ts",
                         (since or 0.0,))

    def has_request(self, request_id: str) -> bool:
        with self._lock:
            return bool(self._fetch("SELECT 1 FROM requests WHERE request_id = ?",
                                    (request_id,)))

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query in the shared SQL (`?` placeholders), on either backend."""
        return self._all(sql, tuple(params))

    def counts(self) -> dict[str, int]:
        """Row counts and the running tallies of ignored records, for reconciliation."""
        with self._lock:
            out = {t: int(self._fetch(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"])
                   for t in ("requests", "attempts", "feedback")}
            meta = {r["key"]: r["value"] for r in self._fetch("SELECT key, value FROM meta")}
        out["duplicates"] = int(meta.get("duplicates", 0))
        out["rejected_feedback"] = int(meta.get("rejected_feedback", 0))
        return out

    def _order_col(self, table: str) -> str:
        return "id" if table == "attempts" else self.ROWID

    def iter_records(self, chunk: int = 5000) -> Iterator[Record]:
        """Every stored record, attempts then requests then feedback, each in write order.

        Read in chunks so a large trail is never held in memory at once; built without
        validation because the rows were validated on the way in.
        """
        for table, build in (("attempts", AttemptRecord), ("requests", RequestRecord),
                             ("feedback", FeedbackRecord)):
            last, col = 0, self._order_col(table)
            while True:
                with self._lock:
                    rows = self._fetch(f"SELECT {col} AS _n, * FROM {table} WHERE {col} > ? "
                                       f"ORDER BY {col} LIMIT ?", (last, chunk))
                if not rows:
                    break
                last = rows[-1]["_n"]
                for r in rows:
                    d = self._row(r)
                    d.pop("_n")
                    d.pop("id", None)
                    yield build.model_construct(**d)

    def history(self, until: float, max_requests: int) -> list[Record]:
        """The latest `max_requests` requests before `until`, each after its attempts, and
        the feedback given before `until`, in the order the router first saw them (what a
        restarted router relearns from)."""
        if max_requests <= 0:
            return []
        with self._lock:
            row = self._fetch("SELECT ts FROM requests WHERE ts < ? ORDER BY ts DESC "
                              "LIMIT 1 OFFSET ?", (until, max_requests - 1))
            since = row[0]["ts"] if row else float("-inf")
            acols = quoted(ATTEMPT_COLS, "a.")
            attempts = self._fetch(
                f"SELECT r.ts AS _key, a.id AS _n, {acols} FROM attempts a JOIN requests r "
                "ON r.request_id = a.request_id WHERE r.ts >= ? AND r.ts < ?", (since, until))
            requests, feedback = (self._fetch(
                f"SELECT ts AS _key, {self.ROWID} AS _n, * FROM {t} WHERE ts >= ? AND ts < ?",
                (since, until)) for t in ("requests", "feedback"))
        keyed = []
        for order, rows, build in ((0, attempts, AttemptRecord), (1, requests, RequestRecord),
                                   (2, feedback, FeedbackRecord)):
            for r in rows:
                d = self._row(r)
                key = (d.pop("_key"), order, d.pop("_n"))
                d.pop("id", None)
                keyed.append((key, build.model_construct(**d)))
        keyed.sort(key=lambda kr: kr[0])
        return [r for _, r in keyed]


def _ctx(context: dict[str, str]) -> str:
    return json.dumps(context, sort_keys=True, separators=(",", ":"))


def _values(row: dict[str, Any], cols: list[str]) -> list[Any]:
    """Flags as 0/1: both backends store them as integers."""
    return [int(v) if isinstance(v, bool) else v for v in (row[k] for k in cols)]
