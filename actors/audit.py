"""The audit trail: every attempt, request and feedback record, durably, in SQLite.

WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed (only a
power loss can drop the last transactions), and readers never block the writer. One batch
is one transaction, so the commit *is* the acknowledgement.

Every table has an idempotency key, so a batch re-sent after a tracker crash never
duplicates rows: attempts ``(request_id, execution, attempt, provider)``, requests
``request_id`` (exactly one terminal outcome per request), feedback ``request_id`` (the latest
wins). `execution` tells a re-sent copy of an attempt (same execution: ignored) from an
attempt of a request routed again after its router died (another execution: billed, so
kept). The file, its WAL and SHM, and its directory are private (0600 / 0700).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import Field, TypeAdapter

from actors.privacy import StoreText, TextPolicy
from actors.records import AttemptRecord, FeedbackRecord, RequestRecord, WarningRecord
from actors.state import private_dir, private_file

#: error_class of a placeholder terminal row written by a caller whose router died mid-request.
UNKNOWN_OUTCOME = "unknown_outcome"
Record = AttemptRecord | RequestRecord | FeedbackRecord | WarningRecord
_RECORD: TypeAdapter[Record] = TypeAdapter(Annotated[Record, Field(discriminator="kind")])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL, attempt INTEGER NOT NULL, provider TEXT NOT NULL,
    ts REAL NOT NULL, model TEXT NOT NULL, policy TEXT NOT NULL, context TEXT NOT NULL,
    ok INTEGER NOT NULL, error_class TEXT, error TEXT, status INTEGER,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    latency_s REAL NOT NULL, confidence REAL, prompt TEXT, response TEXT,
    simulated INTEGER NOT NULL DEFAULT 0, execution TEXT NOT NULL DEFAULT '',
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
    simulated INTEGER NOT NULL DEFAULT 0
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

#: requests columns newer than the first release: name → declaration.
_ADDED_COLUMNS = {"quality_target": "REAL", "explored": "INTEGER NOT NULL DEFAULT 0",
                  "cached": "INTEGER NOT NULL DEFAULT 0", "saved_usd": "REAL NOT NULL DEFAULT 0"}
_ATTEMPT_COLS = [n for n in AttemptRecord.model_fields if n != "kind"]
_REQUEST_COLS = [n for n in RequestRecord.model_fields if n != "kind"]
_COST_COLS = ["ts", "request_id", "provider", "model", "input_tokens", "output_tokens",
              "cost_usd", "ok"]


def as_record(obj: Record | dict[str, Any]) -> Record:
    """Accept a record model or its dict (as sent over the wire; `kind` picks the type)."""
    if isinstance(obj, AttemptRecord | RequestRecord | FeedbackRecord):
        return obj
    return _RECORD.validate_python(obj)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall()}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an audit database written by an earlier version up to this schema.

    `requests` gains `simulated` in place; `attempts` is rebuilt once, because its unique
    key gains `execution` and SQLite cannot change a table constraint in place.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "requests" in tables and "simulated" not in _columns(conn, "requests"):
            conn.execute("ALTER TABLE requests ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0")
        if "attempts" in tables and "execution" not in _columns(conn, "attempts"):
            old = sorted(_columns(conn, "attempts"))
            conn.execute("ALTER TABLE attempts RENAME TO attempts_v1")
            conn.execute(_SCHEMA.split(";", 1)[0])  # the new CREATE TABLE attempts
            cols = ", ".join(old)
            conn.execute(f"INSERT INTO attempts ({cols}) SELECT {cols} FROM attempts_v1")
            conn.execute("DROP TABLE attempts_v1")  # its index goes with it
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


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


class AuditStore:
    """One SQLite file; one connection guarded by a lock (used from one thread at a time)."""

    def __init__(self, path: str | Path, *, store_text: StoreText = "full",
                 text: TextPolicy | None = None) -> None:
        """`text` applies `store_text` (default: a policy keyed from the DB's directory)."""
        self.path = Path(path).expanduser()
        private_dir(self.path.parent)
        self.text = text or TextPolicy.for_dir(store_text, self.path.parent)
        self.store_text = self.text.mode
        self._lock = threading.Lock()
        private_file(self.path)  # 0600 before SQLite opens it; WAL and SHM copy its mode
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: cannot use WAL mode (got {mode!r})")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        _migrate(self._conn)
        self._conn.executescript(_SCHEMA)
        self._add_columns("requests", _ADDED_COLUMNS)
        for suffix in ("-wal", "-shm"):  # left by an earlier version with looser modes
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                private_file(side)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        """Columns added to a table after its first release, added to an older file too."""
        have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    # -- writes -------------------------------------------------------------------------

    def write_batch(self, records: Iterable[Record | dict[str, Any]]) -> int:
        """Store a batch in one transaction; returns how many records were new."""
        return self.store(records).stored

    def store(self, records: Iterable[Record | dict[str, Any]]) -> Written:
        """Like `write_batch`, but says exactly what changed (duplicates are skipped)."""
        recs = [as_record(r) for r in records]
        out = Written()
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
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
                        c.execute("INSERT OR IGNORE INTO warnings (ts, scope, message) "
                                  "VALUES (?, ?, ?)", (r.ts, r.scope, r.message))
                    else:
                        self._upsert_feedback(r, out)
                self._bump("duplicates", out.duplicates)
                self._bump("rejected_feedback", out.rejected)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return out

    def _insert_attempt(self, r: AttemptRecord) -> bool:
        row = r.model_dump(exclude={"kind"})
        row["context"] = _ctx(r.context)
        row["prompt"], row["response"] = self.text.apply(r.prompt), self.text.apply(r.response)
        cols = ", ".join(_ATTEMPT_COLS)
        marks = ", ".join(f":{k}" for k in _ATTEMPT_COLS)
        cur = self._conn.execute(f"INSERT OR IGNORE INTO attempts ({cols}) VALUES ({marks})", row)
        return cur.rowcount == 1

    def _insert_request(self, r: RequestRecord) -> bool:
        row = r.model_dump(exclude={"kind"})
        row["context"] = _ctx(r.context)
        cols = ", ".join(_REQUEST_COLS)
        marks = ", ".join(f":{k}" for k in _REQUEST_COLS)
        cur = self._conn.execute(f"INSERT OR IGNORE INTO requests ({cols}) VALUES ({marks})", row)
        if cur.rowcount == 1:
            return True
        if r.error_class != UNKNOWN_OUTCOME:
            # A caller that lost its router wrote a placeholder; the real outcome (replayed
            # from the router's journal) replaces it. Still exactly one row per request.
            sets = ", ".join(f"{k} = :{k}" for k in _REQUEST_COLS if k != "request_id")
            cur = self._conn.execute(
                f"UPDATE requests SET {sets} WHERE request_id = :request_id "
                f"AND error_class = '{UNKNOWN_OUTCOME}'", row)
            return cur.rowcount == 1
        return False

    def _upsert_feedback(self, r: FeedbackRecord, out: Written) -> None:
        c = self._conn
        known = c.execute("SELECT 1 FROM requests WHERE request_id = ?", (r.request_id,))
        if known.fetchone() is None:
            out.rejected += 1
            return
        old = c.execute(
            "SELECT ts, score FROM feedback WHERE request_id = ?", (r.request_id,)
        ).fetchone()
        if old is None:
            c.execute("INSERT INTO feedback (request_id, ts, score) VALUES (?, ?, ?)",
                      (r.request_id, r.ts, r.score))
            out.feedback.append((r, None))
        elif r.ts < old["ts"] or (r.ts == old["ts"] and r.score == old["score"]):
            out.duplicates += 1  # a re-sent or stale score; the latest one stays
        else:
            c.execute("UPDATE feedback SET ts = ?, score = ? WHERE request_id = ?",
                      (r.ts, r.score, r.request_id))
            out.feedback.append((r, old["score"]))

    def _bump(self, key: str, n: int) -> None:
        if n:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (key, n))

    # -- queries ------------------------------------------------------------------------

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql, params).fetchall()]

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
            return self._conn.execute(
                "SELECT 1 FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone() is not None

    def cost_frame(self, since: float | None = None,
                   simulated: bool | None = None) -> pd.DataFrame:
        """One row per attempt (attempts are what is billed); `ts` as UTC datetimes."""
        sql = f"SELECT {', '.join(_COST_COLS)} FROM attempts WHERE ts >= ?"
        params: tuple[Any, ...] = (since or 0.0,)
        if simulated is not None:
            sql, params = sql + " AND simulated = ?", (*params, int(simulated))
        with self._lock:
            df = pd.read_sql_query(sql + " ORDER BY id", self._conn, params=params)
        df["ts"] = pd.to_datetime(df["ts"].astype(float), unit="s", utc=True)
        df["ok"] = df["ok"].astype(bool)
        return df

    def spend_since(self, ts: float, provider: str | None = None,
                    simulated: bool | None = None) -> float:
        """USD of attempts since `ts`: all, or one provider's; real, simulated or both."""
        sql, params = "SELECT COALESCE(SUM(cost_usd), 0) FROM attempts WHERE ts >= ?", [ts]
        if provider is not None:
            sql += " AND provider = ?"
            params.append(provider)
        if simulated is not None:
            sql += " AND simulated = ?"
            params.append(int(simulated))
        with self._lock:
            return float(self._conn.execute(sql, params).fetchone()[0])

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query (the spend summaries aggregate in SQL through this)."""
        return self._all(sql, tuple(params))

    def counts(self) -> dict[str, int]:
        """Row counts and the running tallies of ignored records, for reconciliation."""
        with self._lock:
            c = self._conn
            out = {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                   for t in ("requests", "attempts", "feedback")}
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        out["duplicates"] = int(meta.get("duplicates", 0))
        out["rejected_feedback"] = int(meta.get("rejected_feedback", 0))
        return out

    def iter_records(self, chunk: int = 5000) -> Iterator[Record]:
        """Every stored record, attempts then requests then feedback, each in write order.

        Read in chunks so a large trail is never held in memory at once; built without
        validation because the rows were validated on the way in.
        """
        for table, build in (("attempts", AttemptRecord), ("requests", RequestRecord),
                             ("feedback", FeedbackRecord)):
            last = 0
            while True:
                with self._lock:
                    rows = self._conn.execute(
                        f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid > ? "
                        "ORDER BY rowid LIMIT ?", (last, chunk)).fetchall()
                if not rows:
                    break
                last = rows[-1]["_rowid"]
                for r in rows:
                    d = _row(r)
                    d.pop("_rowid")
                    d.pop("id", None)
                    yield build.model_construct(**d)


    def history(self, until: float, max_requests: int) -> list[Record]:
        """The latest `max_requests` requests before `until`, each after its attempts, and
        the feedback given before `until`, in the order the router first saw them (what a
        restarted router relearns from)."""
        if max_requests <= 0:
            return []
        with self._lock:
            c = self._conn
            row = c.execute("SELECT ts FROM requests WHERE ts < ? ORDER BY ts DESC "
                            "LIMIT 1 OFFSET ?", (until, max_requests - 1)).fetchone()
            since = row[0] if row else float("-inf")
            acols = ", ".join(f"a.{n}" for n in _ATTEMPT_COLS)
            attempts = c.execute(
                f"SELECT r.ts AS _key, a.id AS _n, {acols} FROM attempts a JOIN requests r "
                "ON r.request_id = a.request_id WHERE r.ts >= ? AND r.ts < ?",
                (since, until)).fetchall()
            requests = c.execute("SELECT ts AS _key, rowid AS _n, * FROM requests "
                                 "WHERE ts >= ? AND ts < ?", (since, until)).fetchall()
            feedback = c.execute("SELECT ts AS _key, rowid AS _n, * FROM feedback "
                                 "WHERE ts >= ? AND ts < ?", (since, until)).fetchall()
        keyed = []
        for order, rows, build in ((0, attempts, AttemptRecord), (1, requests, RequestRecord),
                                   (2, feedback, FeedbackRecord)):
            for r in rows:
                d = _row(r)
                key = (d.pop("_key"), order, d.pop("_n"))
                d.pop("id", None)
                keyed.append((key, build.model_construct(**d)))
        keyed.sort(key=lambda kr: kr[0])
        return [r for _, r in keyed]


def _ctx(context: dict[str, str]) -> str:
    return json.dumps(context, sort_keys=True, separators=(",", ":"))


def _row(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    if "context" in d:
        d["context"] = json.loads(d["context"])
    for flag in ("ok", "explored", "simulated", "cached"):
        if flag in d:
            d[flag] = bool(d[flag])
    return d
