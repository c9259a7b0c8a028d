"""AuditStore: durability across SIGKILL, idempotent batches, text modes, queries."""

from __future__ import annotations

import hashlib
import hmac
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord
from actors.stores.audit import AuditStore

T0 = 1_700_000_000.0


def attempt(rid: str, n: int = 1, provider: str = "claude", **kw) -> AttemptRecord:
    base = dict(request_id=rid, attempt=n, ts=T0 + n, provider=provider, model=f"{provider}-m",
                ok=True, input_tokens=100, output_tokens=50, cost_usd=0.01, latency_s=0.5,
                prompt=f"prompt {rid}", response=f"answer {rid}")
    return AttemptRecord(**(base | kw))


def request(rid: str, provider: str | None = "claude", **kw) -> RequestRecord:
    base = dict(request_id=rid, ts=T0 + 10, provider=provider, model="m", ok=provider is not None,
                attempts=1, cost_usd=0.01)
    return RequestRecord(**(base | kw))


def batch(rid: str) -> list:
    return [attempt(rid, 1, ok=False, error_class="server"), attempt(rid, 2), request(rid)]


def test_write_and_read_back(backend) -> None:
    s = backend()
    assert s.write_batch(batch("r1")) == 3
    rows = s.attempts_for("r1")
    assert [r["attempt"] for r in rows] == [1, 2]
    assert rows[0]["ok"] is False and rows[0]["error_class"] == "server"
    assert rows[1]["prompt"] == "prompt r1"
    assert s.request("r1")["provider"] == "claude"
    assert s.has_request("r1") and not s.has_request("nope")
    assert s.request("nope") is None


def test_wire_dicts_are_accepted(backend) -> None:
    s = backend()
    assert s.write_batch([r.model_dump() for r in batch("r1")]) == 3
    with pytest.raises(ValidationError):
        s.write_batch([{"kind": "attempt", "request_id": "x"}])
    assert s.counts()["attempts"] == 2


def test_resent_batch_is_idempotent_and_reported(backend) -> None:
    s = backend()
    s.write_batch(batch("r1"))
    again = s.store(batch("r1") + [request("r1", ok=False, provider=None)])
    assert again.stored == 0 and again.duplicates == 4
    c = s.counts()
    assert (c["attempts"], c["requests"], c["duplicates"]) == (2, 1, 4)
    assert s.request("r1")["provider"] == "claude"  # the first terminal outcome stays


def test_feedback_latest_wins_and_unknown_is_rejected(backend) -> None:
    s = backend()
    s.write_batch(batch("r1"))
    w = s.store([FeedbackRecord(request_id="r1", ts=T0 + 20, score=0.2),
                 FeedbackRecord(request_id="r1", ts=T0 + 30, score=0.9),
                 FeedbackRecord(request_id="r1", ts=T0 + 25, score=0.0),  # stale
                 FeedbackRecord(request_id="ghost", ts=T0, score=1.0)])
    assert [(f.score, prev) for f, prev in w.feedback] == [(0.2, None), (0.9, 0.2)]
    assert (w.duplicates, w.rejected) == (1, 1)
    assert s.feedback_for("r1")["score"] == 0.9
    assert s.counts()["rejected_feedback"] == 1


@pytest.mark.parametrize("mode", ["hash", "none"])
def test_text_modes_keep_no_text(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "a.db"
    s = AuditStore(path, store_text=mode)
    secret = "SECRET-PROMPT-TEXT-4711"
    s.write_batch([attempt("r1", prompt=secret, response="SECRET-ANSWER-0815")])
    row = s.attempts_for("r1")[0]
    if mode == "hash":  # keyed: not the bare sha256 anyone can compute from a guess
        key = (tmp_path / "hmac.key").read_bytes()
        want = "hmac-sha256:" + hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
        assert row["prompt"] == want != hashlib.sha256(secret.encode()).hexdigest()
        assert oct((tmp_path / "hmac.key").stat().st_mode & 0o777) == "0o600"
    else:
        assert row["prompt"] is None
    s.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"SECRET" not in raw


def test_hash_mode_uses_the_key_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLM_ROUTER_HMAC_KEY", "k1")
    a = AuditStore(tmp_path / "a.db", store_text="hash")
    a.write_batch([attempt("r1", prompt="same text")])
    monkeypatch.setenv("LLM_ROUTER_HMAC_KEY", "k2")
    b = AuditStore(tmp_path / "b.db", store_text="hash")
    b.write_batch([attempt("r1", prompt="same text")])
    pa, pb = a.attempts_for("r1")[0]["prompt"], b.attempts_for("r1")[0]["prompt"]
    assert pa.startswith("hmac-sha256:") and pa != pb and not (tmp_path / "hmac.key").exists()
    b.write_batch([attempt("r2", prompt=pa)])  # an already keyed digest is not hashed again
    assert b.attempts_for("r2")[0]["prompt"] == pa


def test_files_and_directory_are_private(tmp_path: Path) -> None:
    loose = tmp_path / "state"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    (loose / "a.db").touch()
    (loose / "a.db").chmod(0o644)  # as an earlier version left them
    s = AuditStore(loose / "a.db")
    s.write_batch(batch("r1"))
    mode = lambda p: oct(p.stat().st_mode & 0o777)  # noqa: E731
    assert mode(loose) == "0o700"
    for name in ("a.db", "a.db-wal", "a.db-shm"):
        assert mode(loose / name) == "0o600", name
    fresh = tmp_path / "new" / "deeper"
    AuditStore(fresh / "a.db")
    assert mode(fresh) == "0o700" and mode(fresh / "a.db") == "0o600"


def test_a_request_routed_again_keeps_both_executions(backend) -> None:
    """Both executions were billed: the second must not be dropped as a re-sent copy."""
    s = backend()
    first = attempt("r1", execution="e1", cost_usd=0.25)
    assert s.write_batch([first, first]) == 1  # a re-sent copy is still ignored
    assert s.write_batch([attempt("r1", execution="e2", cost_usd=0.25)]) == 1
    assert s.spend_since(0) == pytest.approx(0.5)


def test_spend_of_one_kind(backend) -> None:
    s = backend()
    s.write_batch([attempt("r1", cost_usd=0.5), attempt("s1", cost_usd=2.1, simulated=True)])
    assert s.spend_since(0, simulated=False) == pytest.approx(0.5)
    assert s.spend_since(0, simulated=True) == pytest.approx(2.1)
    assert s.spend_since(0) == pytest.approx(2.6)
    assert s.attempts_for("s1")[0]["simulated"] is True


_V1_SCHEMA = """
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL, attempt INTEGER NOT NULL, provider TEXT NOT NULL,
    ts REAL NOT NULL, model TEXT NOT NULL, policy TEXT NOT NULL, context TEXT NOT NULL,
    ok INTEGER NOT NULL, error_class TEXT, error TEXT, status INTEGER,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    latency_s REAL NOT NULL, confidence REAL, prompt TEXT, response TEXT,
    UNIQUE (request_id, attempt, provider)
);
CREATE INDEX attempts_spend ON attempts (ts, provider, cost_usd);
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL, policy TEXT NOT NULL, context TEXT NOT NULL,
    provider TEXT, model TEXT, ok INTEGER NOT NULL, error_class TEXT, error TEXT,
    attempts INTEGER NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, latency_s REAL NOT NULL, confidence REAL
);
INSERT INTO attempts VALUES (7, 'old', 1, 'claude', 1.0, 'm', 'p', '{}', 1, NULL, NULL, 200,
                             10, 5, 0.125, 0.1, NULL, 'the prompt', 'the answer');
INSERT INTO requests VALUES ('old', 2.0, 'p', '{}', 'claude', 'm', 1, NULL, NULL, 1, 10, 5,
                             0.125, 0.1, NULL);
"""


def test_an_earlier_database_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "a.db"
    with sqlite3.connect(path) as db:
        db.executescript(_V1_SCHEMA)
    s = AuditStore(path)
    old = s.attempts_for("old")
    assert len(old) == 1 and old[0]["cost_usd"] == 0.125 and old[0]["response"] == "the answer"
    assert old[0]["simulated"] is False and old[0]["execution"] == ""
    assert s.request("old")["simulated"] is False
    s.write_batch([attempt("old", 1, execution="e2", ts=3.0)])  # a new execution now fits
    assert len(s.attempts_for("old")) == 2
    assert s.spend_since(0, simulated=False) == pytest.approx(0.135)
    s.close()
    assert AuditStore(path).counts()["attempts"] == 2  # opening again changes nothing


def test_cost_frame_and_spend(backend) -> None:
    s = backend()
    s.write_batch(batch("r1") + [attempt("r2", 1, provider="gpt", cost_usd=0.5, ts=T0 + 100)])
    df = s.cost_frame()
    assert list(df.columns) == ["ts", "request_id", "provider", "model", "input_tokens",
                                "output_tokens", "cost_usd", "ok"]
    assert len(df) == 3 and str(df["ts"].dt.tz) == "UTC"
    assert len(s.cost_frame(since=T0 + 50)) == 1
    assert s.spend_since(T0) == pytest.approx(0.52)
    assert s.spend_since(T0, provider="gpt") == pytest.approx(0.5)
    assert s.spend_since(T0 + 101) == 0.0


_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from actors.stores.audit import AuditStore
    from actors.core.records import AttemptRecord
    s = AuditStore(sys.argv[1])
    recs = [AttemptRecord(request_id=f"r{i}", attempt=1, ts=1.0, provider="p", model="m", ok=True)
            for i in range(50)]
    n = s.write_batch(recs)   # returns after COMMIT: acknowledged
    print(n, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_acknowledged_batch_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), root],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "50"
    assert Path(str(path) + "-wal").exists()  # not checkpointed: recovery reads the WAL
    assert AuditStore(path).counts()["attempts"] == 50


def test_placeholder_outcome_is_replaced_by_the_real_one(backend) -> None:
    import time as _time

    from actors.core.records import RequestRecord
    from actors.stores.audit import UNKNOWN_OUTCOME

    store = backend()
    now = _time.time()
    placeholder = RequestRecord(request_id="r1", ts=now, ok=False, attempts=0,
                                error_class=UNKNOWN_OUTCOME, error="router died")
    real = RequestRecord(request_id="r1", ts=now, ok=True, attempts=1, provider="p", cost_usd=0.1)
    assert store.write_batch([placeholder]) == 1
    assert store.write_batch([real]) == 1
    assert store.write_batch([placeholder]) == 0  # and never back
    row = store.request("r1")
    assert row["ok"] and row["provider"] == "p"
    assert store.counts()["requests"] == 1


def test_history_and_records_come_back_in_write_order(backend) -> None:
    """What the learner rebuilds from (`history`) and the full dump, on both backends."""
    s = backend()
    s.write_batch(batch("r1"))
    s.write_batch([attempt("r2", 1, ts=T0 + 5), request("r2", ts=T0 + 20),
                   FeedbackRecord(request_id="r1", ts=T0 + 30, score=0.7)])
    got = [(type(r).__name__, r.request_id) for r in s.history(T0 + 100, 10)]
    assert got == [("AttemptRecord", "r1"), ("AttemptRecord", "r1"), ("RequestRecord", "r1"),
                   ("AttemptRecord", "r2"), ("RequestRecord", "r2"), ("FeedbackRecord", "r1")]
    assert [r.request_id for r in s.history(T0 + 100, 1) if isinstance(r, RequestRecord)] == ["r2"]
    every = list(s.iter_records(chunk=2))
    assert [type(r).__name__ for r in every].count("AttemptRecord") == 3 and len(every) == 6
    assert all(isinstance(r.context, dict) for r in every if not isinstance(r, FeedbackRecord))


def test_a_second_store_on_the_same_database_sees_everything(backend) -> None:
    """A tracker restarted (on SQLite: same file; on PostgreSQL: any node) finds the trail."""
    first = backend()
    first.write_batch(batch("r1"))
    first.close()
    again = backend()
    assert again.counts()["attempts"] == 2 and again.has_request("r1")
    assert again.write_batch(batch("r1")) == 0  # re-sent after the restart: no duplicates


def test_postgres_hash_mode_keeps_its_key_in_the_database(pg_url, monkeypatch) -> None:
    from actors.stores.audit_pg import PgAuditStore
    from actors.stores.pg import PgTarget

    monkeypatch.delenv("LLM_ROUTER_HMAC_KEY", raising=False)
    a = PgAuditStore(PgTarget(pg_url), store_text="hash")
    a.write_batch([attempt("r1", prompt="SECRET-PROMPT")])
    b = PgAuditStore(PgTarget(pg_url), store_text="hash")  # another node: same key, same hash
    b.write_batch([attempt("r2", prompt="SECRET-PROMPT")])
    pa, pb = a.attempts_for("r1")[0]["prompt"], b.attempts_for("r2")[0]["prompt"]
    assert pa == pb and pa.startswith("hmac-sha256:") and "SECRET" not in pa


_PG_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from actors.stores.audit_pg import PgAuditStore
    from actors.stores.pg import PgTarget
    from actors.core.records import AttemptRecord
    s = PgAuditStore(PgTarget(sys.argv[1]))
    recs = [AttemptRecord(request_id=f"r{i}", attempt=1, ts=1.0, provider="p", model="m", ok=True)
            for i in range(50)]
    n = s.write_batch(recs)   # returns after COMMIT: acknowledged
    print(n, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_postgres_acknowledged_batch_survives_sigkill(pg_url) -> None:
    from actors.stores.audit_pg import PgAuditStore
    from actors.stores.pg import PgTarget

    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, "-c", _PG_CHILD, pg_url, root],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "50"
    assert PgAuditStore(PgTarget(pg_url)).counts()["attempts"] == 50


def test_the_database_password_comes_from_the_environment_only(pg_url, monkeypatch) -> None:
    from actors.stores.pg import DatabaseError, PgTarget, check_db_url

    with pytest.raises(ValueError, match="must not hold the password"):
        check_db_url(pg_url.replace("router@", "router:hunter2@"))
    with pytest.raises(ValueError, match="postgresql://"):
        check_db_url("mysql://router@db/x")
    monkeypatch.setenv("LLM_ROUTER_DB_PASSWORD", "wrong-password-123")
    with pytest.raises(DatabaseError) as info:
        PgTarget(pg_url).connect()
    assert "wrong-password-123" not in str(info.value) and "router@" in str(info.value)
    monkeypatch.setenv("OTHER_PW", "router-test-pw")
    PgTarget(pg_url, "OTHER_PW").connect().close()  # tracker.db_password_env names another


def test_postgres_store_reconnects_after_losing_its_connection(pg_url, pg_server) -> None:
    """The server dropped us (restart, failover, network): the batch in progress fails — so
    it is not acknowledged and the router re-sends it — and the next call reconnects."""
    import psycopg

    from actors.stores.audit_pg import PgAuditStore
    from actors.stores.pg import PgTarget

    s = PgAuditStore(PgTarget(pg_url))
    s.write_batch(batch("r1"))
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.admin_conninfo(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
    with pytest.raises(psycopg.OperationalError):
        s.write_batch(batch("r2"))
    assert s.write_batch(batch("r2")) == 3  # re-sent: stored once, on a new connection
    assert s.counts()["requests"] == 2
