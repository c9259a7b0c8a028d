"""The exact-match response cache: an answer already paid for is not paid for again.

Key: a keyed hash (HMAC, with a key kept in the cache file itself, so instances sharing the
file share its answers) of the provider's answer-shaping settings (name, wire format,
model, base URL, output cap, thinking budget, dialect, capabilities,
simulated or not) and of the whole `Completion` as the router sends it (every parameter,
present and future: the dump is of the model, not a list of fields) plus the output kind.
Two requests that could get different answers never share a key; a simulated answer is
never served for a real provider.

A second, smaller map remembers which answer each *policy* got for a request (`choice`
key: policy, context without the run id, Completion, output kind). A backtest re-run under
a new run id replays the same answer for the same (policy, bar) even when the learning
policies, trained further since, would rank providers differently: re-running a backtest
reproduces it for $0. Policies that chose the same provider share its answer, so a
3-policy run pays each distinct (provider, prompt) once.

Modes per request (`RouteRequest.cache`): `off` (default for live traffic), `read`,
`write`, `both` (backtests' default), `only` (read; a miss fails with `cache_miss`
instead of calling a provider: `--cache-only` replays).

The store is its own SQLite file (`response-cache.sqlite3` in the state directory, or
`cache.path`), not the idempotency store: a request id names one request for 24 h, a cache
entry outlives every id (TTL `cache.ttl_s`, default 30 days) and is bounded by
`cache.max_entries` (oldest evicted first). Answers are text, so with `tracker.store_text`
other than `full` the cache lives in memory only. Writes happen on a writer thread in
small group commits; reads are point lookups on the caller's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actors.config import ProviderSpec
from actors.stores.state import private_file

log = logging.getLogger(__name__)
CACHE_FILE = "response-cache.sqlite3"
#: Per-request cache use. `only`: read, and never call a provider (a miss is an error).
CacheMode = Literal["off", "read", "write", "both", "only"]
READS: frozenset[str] = frozenset({"read", "both", "only"})
WRITES: frozenset[str] = frozenset({"write", "both"})
#: Context keys that name a run, not what is asked (a re-run under a new id still hits).
RUN_CONTEXT_KEYS = ("backtest",)
_SPEC_FIELDS = {"name", "api", "model", "base_url", "max_output_tokens", "thinking_budget",
                "dialect", "capabilities"}


class CacheSpec(BaseModel):
    """The `cache:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: no cache at all (every mode acts as off).")
    path: str | None = Field(None, description=f"SQLite file; default {CACHE_FILE} in the "
                             "instance's state directory.")
    ttl_s: float = Field(30 * 86400.0, gt=0, description="Entries older than this are misses.")
    max_entries: int = Field(200_000, ge=1, description="Size bound; the oldest go first.")


class CachedAnswer(BaseModel):
    """One stored answer: what a hit hands back, and what it originally cost."""

    provider: str
    model: str
    text: str
    finish_reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = Field(0.0, ge=0, description="What the provider billed for it then.")
    parsed: dict[str, Any] | None = None
    simulated: bool = False
    ts: float = 0.0


def _mac(key: bytes, parts: list[str]) -> str:
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def answer_key(key: bytes, spec: ProviderSpec, simulated: bool, completion: BaseModel,
               output: str) -> str:
    """The cache key of `completion` sent to the provider `spec` (see the module docstring)."""
    provider = spec.model_dump_json(include=_SPEC_FIELDS)
    return _mac(key, ["answer", provider, str(simulated), output,
                      completion.model_dump_json(exclude_none=True)])


def choice_key(key: bytes, policy: str, context: dict[str, str], completion: BaseModel,
               output: str) -> str:
    """Which answer a policy got for this request, whichever provider gave it."""
    ctx = json.dumps(sorted((k, v) for k, v in context.items() if k not in RUN_CONTEXT_KEYS))
    return _mac(key, ["choice", policy, ctx, output,
                      completion.model_dump_json(exclude_none=True)])


class ResponseCache:
    """SQLite-backed answers and policy choices (one connection, a lock around it)."""

    def __init__(self, spec: CacheSpec, path: str | Path | None, *, key: bytes | None = None,
                 clock: Any = time.time) -> None:
        """`path` None: in memory only (answers may not be written to disk). `key`: the HMAC
        key of its keys; default the file's own (made at its creation and kept in it), so
        every instance sharing a cache file finds the same answers."""
        self.spec = spec
        self.path = Path(path) if path is not None else None
        self._clock = clock
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_file(self.path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path or ":memory:", check_same_thread=False,
                                     isolation_level=None)
        if self.path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, ts REAL NOT NULL, "
            "provider TEXT NOT NULL, answer TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS answers_ts ON answers (ts);"
            "CREATE TABLE IF NOT EXISTS choices (key TEXT PRIMARY KEY, ts REAL NOT NULL, "
            "answer_key TEXT NOT NULL);"
            "CREATE INDEX IF NOT EXISTS choices_ts ON choices (ts);"
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);")
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('hmac_key', ?)",
                           (secrets.token_bytes(32),))
        self.key: bytes = key if key is not None else self._conn.execute(
            "SELECT value FROM meta WHERE name = 'hmac_key'").fetchone()[0]
        self._pending: list[tuple[str, str | None, CachedAnswer]] = []
        self._unwritten: dict[str, CachedAnswer] = {}
        self._unwritten_choices: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="response-cache")
        self._writer: asyncio.Future[None] | None = None
        self._writes = 0
        #: answer keys being paid for right now → done when their answer is kept (or not)
        self.inflight: dict[str, asyncio.Future[None]] = {}
        self.hits = 0
        self.misses = 0
        self.saved_usd = 0.0

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: str) -> CachedAnswer | None:
        hit = self._unwritten.get(key)
        if hit is None:
            with self._lock:
                row = self._conn.execute("SELECT ts, answer FROM answers WHERE key = ?",
                                         (key,)).fetchone()
            if row is None or row[0] < self._clock() - self.spec.ttl_s:
                return None
            hit = CachedAnswer.model_validate_json(row[1])
        return hit

    def chosen(self, choice: str) -> str | None:
        """The answer key a policy got for this request before, if any (and not expired)."""
        pending = self._unwritten_choices.get(choice)
        if pending is not None:
            return pending
        with self._lock:
            row = self._conn.execute("SELECT ts, answer_key FROM choices WHERE key = ?",
                                     (choice,)).fetchone()
        if row is None or row[0] < self._clock() - self.spec.ttl_s:
            return None
        return row[1]

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def noted(self, hit: CachedAnswer | None) -> None:
        """Count a lookup's outcome (for `stats`)."""
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
            self.saved_usd += hit.cost_usd

    def stats(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses, "saved_usd": self.saved_usd,
                "entries": self.count(), "path": str(self.path) if self.path else ":memory:"}

    # -- writes --------------------------------------------------------------------------

    def put(self, key: str, choice: str | None, answer: CachedAnswer) -> None:
        """Keep an answer (and the policy's choice of it); written off the caller's path."""
        self._unwritten[key] = answer
        if choice is not None:
            self._unwritten_choices[choice] = key
        self._pending.append((key, choice, answer))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (plain tests, tools): write now
            self._write(self._take())
            return
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self.flush())

    def _take(self) -> list[tuple[str, str | None, CachedAnswer]]:
        batch, self._pending = self._pending, []
        return batch

    async def flush(self) -> None:
        """Commit every kept answer now (one transaction per batch, on the writer thread)."""
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._take()
            try:
                await loop.run_in_executor(self._pool, self._write, batch)
            except Exception as exc:  # an answer not cached is paid again later: say so
                log.warning("could not write %d answers to the response cache: %s",
                            len(batch), exc)

    def _write(self, batch: list[tuple[str, str | None, CachedAnswer]]) -> None:
        now = self._clock()
        answers = [(k, a.ts or now, a.provider, a.model_dump_json()) for k, _, a in batch]
        choices = [(c, now, k) for k, c, _ in batch if c is not None]
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", answers)
                c.executemany("INSERT OR REPLACE INTO choices VALUES (?, ?, ?)", choices)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            for k, ch, a in batch:
                if self._unwritten.get(k) is a:
                    del self._unwritten[k]
                if ch is not None and self._unwritten_choices.get(ch) == k:
                    del self._unwritten_choices[ch]
            self._writes += len(batch)
            if self._writes >= 1000:
                self._writes = 0
                self._trim(now)

    def _trim(self, now: float) -> None:
        """Drop expired entries, then the oldest beyond `max_entries` (under the lock)."""
        c = self._conn
        c.execute("DELETE FROM answers WHERE ts < ?", (now - self.spec.ttl_s,))
        c.execute("DELETE FROM choices WHERE ts < ?", (now - self.spec.ttl_s,))
        for table in ("answers", "choices"):
            over = c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] - self.spec.max_entries
            if over > 0:
                c.execute(f"DELETE FROM {table} WHERE key IN (SELECT key FROM {table} "
                          "ORDER BY ts LIMIT ?)", (over,))

    def trim(self) -> None:
        with self._lock:
            self._trim(self._clock())

    def close(self) -> None:
        """Write what is still pending, then close (from outside the event loop)."""
        self._pool.shutdown(wait=True)
        if self._pending:
            self._write(self._take())
        with self._lock:
            self._conn.close()
