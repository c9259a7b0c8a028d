"""The router's state in PostgreSQL, where a restarted actor on any node finds it.

With `tracker.db_url` set, what a router keeps in its state directory on one machine lives
in the same database as the audit trail instead: budget overrides and the HMAC key in
`llm_router_state` (a small key → text table), request outcomes for idempotent replays in
`idempotency_outcomes`, and the journal of unacknowledged records in `router_journal`
(`actors/stores/pg_journal.py`). One database serves one llm-router instance.
"""

from __future__ import annotations

import os
import secrets
import time

from actors.core.privacy import ENV_HMAC_KEY, StoreText, TextPolicy
from actors.stores.idempotency import Entry
from actors.stores.lease import Fence
from actors.stores.pg import PgSession, PgTarget

HMAC_KEY = "hmac_key"
BUDGET_OVERRIDES = "budget_overrides"


class PgKeyValue:
    """Small named texts (budget overrides, the HMAC key), each written in one commit."""

    def __init__(self, target: PgTarget, session: PgSession | None = None,
                 fence: Fence | None = None) -> None:
        """`fence`: the router's lease — writes from a replaced router are refused."""
        self.db = session or PgSession(target)
        self.fence = fence
        with self.db.lock:
            self.db.script("CREATE TABLE IF NOT EXISTS llm_router_state (key TEXT PRIMARY KEY, "
                           "value TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)")

    def get(self, key: str) -> tuple[str, float] | None:
        """The text and when it was written, or None."""
        with self.db.lock:
            rows = self.db.fetch("SELECT value, ts FROM llm_router_state WHERE key = ?", (key,))
        return (rows[0]["value"], rows[0]["ts"]) if rows else None

    def put(self, key: str, value: str) -> None:
        with self.db.lock, self.db.transaction():
            self._check()
            self.db.exec("INSERT INTO llm_router_state (key, value, ts) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, ts = excluded.ts",
                         (key, value, time.time()))

    def delete(self, key: str) -> None:
        with self.db.lock, self.db.transaction():
            self._check()
            self.db.exec("DELETE FROM llm_router_state WHERE key = ?", (key,))

    def _check(self) -> None:
        if self.fence is not None:
            self.fence.check(self.db.fetch)

    def setdefault(self, key: str, value: str) -> str:
        """The stored text, storing `value` first if there is none (first writer wins)."""
        with self.db.lock:
            self.db.exec("INSERT INTO llm_router_state (key, value, ts) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO NOTHING", (key, value, time.time()))
            return self.db.fetch("SELECT value FROM llm_router_state WHERE key = ?",
                                 (key,))[0]["value"]

    def slot(self, key: str) -> PgSlot:
        """One named text, with `budget_overrides.Saved`'s interface."""
        return PgSlot(self, key)

    def hmac_key(self) -> bytes:
        """$LLM_ROUTER_HMAC_KEY, else the cluster's key kept here (made on first use), so a
        router or tracker restarted on another node hashes and fingerprints alike."""
        env = os.environ.get(ENV_HMAC_KEY)
        if env:
            return env.encode()
        return self.setdefault(HMAC_KEY, secrets.token_hex(32)).encode()

    def text_policy(self, mode: StoreText) -> TextPolicy:
        return TextPolicy(mode, self.hmac_key() if mode == "hash" else None)

    def close(self) -> None:
        self.db.close()


class PgSlot:
    """A named text in `llm_router_state` (budget overrides live in one)."""

    def __init__(self, kv: PgKeyValue, key: str) -> None:
        self.kv, self.key = kv, key
        self.where = f"llm_router_state[{key!r}] in the database"

    def read(self) -> tuple[str, float] | None:
        return self.kv.get(self.key)

    def write(self, text: str) -> None:
        self.kv.put(self.key, text)

    def delete(self) -> None:
        self.kv.delete(self.key)


class PgIdempotencyStore:
    """`IdempotencyStore`'s interface over PostgreSQL (`remote`: the book reads it off the
    event loop)."""

    remote = True

    def __init__(self, target: PgTarget, fence: Fence | None = None) -> None:
        """`fence`: the router's lease — outcomes from a replaced router are refused."""
        self.fence = fence
        self.db = PgSession(target)  # writes (the book's writer thread)
        self._read = PgSession(target)  # lookups (its reader thread): never behind a write
        with self.db.lock:
            self.db.script(
                "CREATE TABLE IF NOT EXISTS idempotency_outcomes (request_id TEXT PRIMARY KEY, "
                "fingerprint TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, ok BOOLEAN NOT NULL, "
                "outcome BYTEA);"
                "CREATE INDEX IF NOT EXISTS idempotency_outcomes_ts ON idempotency_outcomes (ts)")

    def get(self, request_id: str) -> Entry | None:
        with self._read.lock:
            rows = self._read.fetch("SELECT fingerprint, ts, ok, outcome FROM idempotency_outcomes "
                                 "WHERE request_id = ?", (request_id,))
        if not rows:
            return None
        r = rows[0]
        return Entry(r["fingerprint"], r["ts"], bool(r["ok"]),
                     None if r["outcome"] is None else bytes(r["outcome"]))

    def put_many(self, rows: list[tuple[str, str, float, bool, bytes | None]]) -> None:
        with self.db.lock, self.db.transaction():
            if self.fence is not None:
                self.fence.check(self.db.fetch)
            self.db.executemany(
                "INSERT INTO idempotency_outcomes VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) "
                "DO UPDATE SET fingerprint = excluded.fingerprint, ts = excluded.ts, "
                "ok = excluded.ok, outcome = excluded.outcome", rows)

    def purge(self, before: float) -> int:
        with self.db.lock, self.db.transaction():
            if self.fence is not None:
                self.fence.check(self.db.fetch)
            return self.db.exec("DELETE FROM idempotency_outcomes WHERE ts < ?", (before,))

    def count(self) -> int:
        with self._read.lock:
            return int(self._read.fetch("SELECT COUNT(*) AS n FROM idempotency_outcomes")[0]["n"])

    def close(self) -> None:
        self.db.close()
        self._read.close()


def drop_state(target: PgTarget) -> None:
    """Remove the router's state tables (tests reuse one database)."""
    db = PgSession(target)
    try:
        db.script("DROP TABLE IF EXISTS llm_router_state, idempotency_outcomes, router_journal, "
                  "llm_router_lease")
    finally:
        db.close()

