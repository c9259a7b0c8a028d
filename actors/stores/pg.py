"""PostgreSQL connections: where the URL comes from, where the password comes from, and one
session every PostgreSQL-backed store (audit trail, router state) runs its SQL through.

`tracker.db_url` names the server, role and database (`postgresql://router@db:5432/llm_router`);
the password is never in it — it comes from the environment (`$LLM_ROUTER_DB_PASSWORD`, or
the variable `tracker.db_password_env` names; libpq's own `PGPASSWORD` / `~/.pgpass` work
too) and is never logged: errors show the URL without it. Every session sets
`synchronous_commit = on`, so a commit is durable when it returns — the commit is the
acknowledgement, as with SQLite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ENV_DB_PASSWORD = "LLM_ROUTER_DB_PASSWORD"
SCHEMES = ("postgresql", "postgres")


class DatabaseError(RuntimeError):
    """The database cannot be reached or refused us; the message names it (no password)."""


def check_db_url(url: str) -> str:
    """`url` if it is a PostgreSQL URL without a password; else a ValueError saying why."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises for a bad port
    except ValueError as exc:
        raise ValueError(f"not a PostgreSQL URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError("must start with postgresql:// (e.g. postgresql://router@db-host:5432/"
                         f"llm_router), got scheme {parts.scheme or 'none'!r}")
    if parts.password is not None or "password=" in parts.query:
        raise ValueError(f"must not hold the password: set ${ENV_DB_PASSWORD} (or the "
                         "variable tracker.db_password_env names) in the environment instead")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("names no host (postgresql://USER@HOST:PORT/DATABASE)")
    if not parts.path.strip("/"):
        raise ValueError("names no database (postgresql://USER@HOST:PORT/DATABASE)")
    return url


def redacted(url: str) -> str:
    """`url` fit for a message: any password in it replaced (ours never hold one)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparsable PostgreSQL URL>"


def deployment_schema(deployment: str) -> str | None:
    """The schema a deployment's tables live in: `public` (None) for "default", as before
    deployments had names; `llm_router_<name>` for any other."""
    return None if deployment == "default" else f"llm_router_{deployment}"


@dataclass(frozen=True)
class PgTarget:
    """Where to connect: the URL from the config, the variable holding the password, and
    the schema of the deployment (None: the database's default, `public`)."""

    url: str
    password_env: str = ENV_DB_PASSWORD
    schema: str | None = None

    @property
    def where(self) -> str:
        """The database (and schema) for messages, without any password."""
        return f"PostgreSQL at {redacted(self.url)}" + (
            f" (schema {self.schema})" if self.schema else "")

    def connect(self) -> Any:
        """An autocommit connection returning dict rows (we open transactions ourselves)."""
        import psycopg
        from psycopg.rows import dict_row

        password = os.environ.get(self.password_env)
        kw = {"password": password} if password else {}
        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=10, application_name="llm-router", **kw)
            conn.execute("SET synchronous_commit = on")
            if self.schema is not None:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except psycopg.Error as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if password:
                detail = detail.replace(password, "***")
            raise DatabaseError(f"{self.where}: {detail}") from None
        return conn


class PgSession:
    """One connection, a lock, and the shared SQL's `?` placeholders turned into psycopg's.

    A broken connection (server restarted, network lost) fails the call in progress — the
    caller's batch is then not acknowledged and is re-sent — and is replaced on the next.
    """

    def __init__(self, target: PgTarget, settings: tuple[str, ...] = ()) -> None:
        """`settings`: statements run on every new connection (e.g. a `SET`)."""
        self.target = target
        self.settings = settings
        self.lock = threading.RLock()
        self._conn = self._connect()
        self._sql: dict[str, str] = {}

    def _connect(self) -> Any:
        conn = self.target.connect()
        for statement in self.settings:
            conn.execute(statement)
        return conn

    def _c(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _native(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def fetch(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        cur = self._c().execute(self._native(sql), params)
        return cur.fetchall() if cur.description else []

    def exec(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
        return self._c().execute(self._native(sql), params).rowcount

    def script(self, sql: str) -> None:
        """Statements without parameters (schema creation)."""
        self._c().execute(sql)

    def executemany(self, sql: str, rows: list[Any]) -> None:
        with self._c().cursor() as cur:
            cur.executemany(self._native(sql), rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._c().transaction():
            yield

    def close(self) -> None:
        with self.lock:
            self._conn.close()
