"""The audit trail in SQLite: the embedded default for one machine.

WAL mode with ``synchronous=NORMAL``: a commit survives the process being killed (only a
power loss can drop the last transactions), and readers never block the writer. The rules
(one batch one transaction, idempotent inserts, the queries) are `actors/stores/audit_base.py`'s,
shared with PostgreSQL (`actors/stores/audit_pg.py`); `open_store` picks the backend from the
tracker's settings. The file, its WAL and SHM, and its directory are private (0600 / 0700).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.core.privacy import StoreText, TextPolicy
from actors.stores.audit_base import (
    ADDED_COLUMNS,
    SCHEMA,
    UNKNOWN_OUTCOME,
    AuditBackend,
    Record,
    Written,
    as_record,
    quoted,
)
from actors.stores.state import private_dir, private_file

if TYPE_CHECKING:
    from actors.shells.tracker import TrackerSpec

__all__ = ["UNKNOWN_OUTCOME", "AuditBackend", "AuditStore", "Record", "Written", "as_record",
           "open_store"]


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
            conn.execute(SCHEMA.split(";", 1)[0])  # the new CREATE TABLE attempts
            cols = quoted(old)
            conn.execute(f"INSERT INTO attempts ({cols}) SELECT {cols} FROM attempts_v1")
            conn.execute("DROP TABLE attempts_v1")  # its index goes with it
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class AuditStore(AuditBackend):
    """One SQLite file; one connection guarded by a lock (used from one thread at a time)."""

    def __init__(self, path: str | Path, *, store_text: StoreText = "full",
                 text: TextPolicy | None = None) -> None:
        """`text` applies `store_text` (default: a policy keyed from the DB's directory)."""
        self.path = Path(path).expanduser()
        private_dir(self.path.parent)
        super().__init__(text or TextPolicy.for_dir(store_text, self.path.parent))
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
        self._conn.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            have = _columns(self._conn, table)
            for name, decl in columns.items():
                if name.strip('"') not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        for suffix in ("-wal", "-shm"):  # left by an earlier version with looser modes
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                private_file(side)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def where(self) -> str:
        return f"SQLite at {self.path}"

    def _script(self, sql: str) -> None:
        self._conn.execute(sql)

    def _fetch(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    def _exec(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")


def open_store(spec: TrackerSpec) -> AuditBackend:
    """The audit store the tracker's settings name: PostgreSQL for a `db_url`, else the
    SQLite file at `db_path`."""
    if spec.db_url is not None:
        from actors.stores.audit_pg import PgAuditStore

        return PgAuditStore(spec.connection(), store_text=spec.store_text)
    return AuditStore(spec.db_path, store_text=spec.store_text)
