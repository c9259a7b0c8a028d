"""Who owns a deployment's state (actors/stores/lease.py): the rule by hand, then the tracker's
lease on both audit backends (SQLite and a real PostgreSQL, tests/pg_server.py) and the
router's on PostgreSQL — a second live owner refused, a restart of the same actor taking
over at once, and writes of the replaced epoch refused."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from actors.config import parse_config
from actors.shells.router_state import RouterState
from actors.shells.tracker import Tracker, TrackerSpec
from actors.stores.lease import Fenced, Holder, Lease, LeaseRefused, Role, Verdict, decide, rows
from actors.stores.pg import PgSession, PgTarget, redacted
from tests.conftest import PG_PASSWORD, make_config
from tests.test_journal import recs
from tests.waiting import wait_until

NOW = 1_000_000.0


def held(owner: str = "a", heartbeat: float = NOW - 1) -> Holder:
    return Holder("default", owner, 3, heartbeat, "h", 1, NOW - 100)


@pytest.mark.parametrize(("row", "owner", "take_over", "verdict"), [
    (None, "b", False, Verdict.FREE),
    (held(), "a", False, Verdict.RESTART),              # Ray restarted the same actor
    (held(heartbeat=0), "b", False, Verdict.RELEASED),
    (held(heartbeat=NOW - 16), "b", False, Verdict.STALE),
    (held(), "b", True, Verdict.TAKEN_OVER),
    (held(), "b", False, Verdict.REFUSED),              # another live system
])
def test_the_rule(row, owner, take_over, verdict):
    assert decide(row, owner=owner, now=NOW, ttl_s=15, take_over=take_over) is verdict


def test_a_holder_whose_process_is_gone_is_taken_over_at_once():
    assert decide(held(), owner="b", now=NOW, ttl_s=15, take_over=False,
                  holder_gone=True) is Verdict.DEAD


def test_urls_in_messages_never_show_a_password():
    assert redacted("postgresql://router:s3cret@db:5432/x") == "postgresql://router:***@db:5432/x"
    assert redacted("postgresql://router@db/x") == "postgresql://router@db/x"


# -- the tracker's lease, on both backends ------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def spec(request, tmp_path):
    """`spec(**kw)`: a TrackerSpec for one shared audit database on each backend."""
    if request.param == "sqlite":
        base = {"db_path": str(tmp_path / "audit.sqlite3")}
    else:
        base = {"db_url": request.getfixturevalue("pg_url")}
    return lambda **kw: TrackerSpec.model_validate(base | {"lease_ttl_s": 1.0} | kw)


def test_a_second_live_owner_is_refused_naming_the_database_and_deployment(spec):
    first = Tracker(spec(), owner="cluster-a")
    try:
        with pytest.raises(LeaseRefused) as info:
            Tracker(spec(), owner="cluster-b")  # waits one TTL for a heartbeat that keeps coming
        text = str(info.value)
        assert first.store.where in text and "deployment 'default'" in text
        assert "owner cluster-a" in text and "tracker.deployment" in text
        assert "tracker.take_over" in text and PG_PASSWORD not in text
        first.record_batch(recs(1))  # the owner is untouched
        assert first.store.request("r1") is not None
    finally:
        first.close()


def test_a_restart_of_the_same_actor_takes_over_at_once_and_fences_the_old(spec):
    old = Tracker(spec(lease_ttl_s=600), owner="actor-1")
    t0 = time.monotonic()
    new = Tracker(spec(lease_ttl_s=600), owner="actor-1")  # no waiting for the 600 s TTL
    try:
        assert time.monotonic() - t0 < 60
        assert new.lease.fence.epoch == old.lease.fence.epoch + 1
        with pytest.raises(Fenced, match="epoch"):
            old.record_batch(recs(1))  # the zombie's batch is refused, nothing written
        assert new.store.request("r1") is None
        new.record_batch(recs(2))
        assert new.store.request("r2") is not None
    finally:
        new.close()
        old.store.close()


def test_released_stale_and_explicit_take_over(spec):
    a = Tracker(spec(lease_ttl_s=600), owner="a")
    a.close()  # a deliberate stop releases: the next owner need not wait
    b = Tracker(spec(lease_ttl_s=2), owner="b")
    assert b.lease.fence.epoch == 2
    c = Tracker(spec(take_over=True), owner="c")  # b is alive: only explicitly
    assert c.lease.fence.epoch == 3
    wait_until(lambda: b.lease.lost is not None, timeout=30)  # b's heartbeat finds out
    with pytest.raises(Fenced):
        b.record_batch(recs(1))
    c.lease.release()
    c.lease.fence = None  # keep the row as c left it, but c stops beating
    d = Tracker(spec(lease_ttl_s=600), owner="d")  # released by c
    assert [h.owner for h in rows(d.store.sql())] == ["d"]
    b.store.close()
    c.store.close()
    d.close()


def test_a_holder_that_stops_heartbeating_is_taken_over_after_the_ttl(spec):
    a = Tracker(spec(lease_ttl_s=0.5), owner="a")
    a.lease._stop.set()  # a hung process: no more heartbeats, no release
    b = Tracker(spec(lease_ttl_s=0.5), owner="b")
    assert b.lease.fence.epoch == 2
    with pytest.raises(Fenced):
        a.record_batch(recs(1))
    a.store.close()
    b.close()


def test_a_holder_whose_process_ended_on_this_host_is_taken_over_at_once(spec):
    a = Tracker(spec(lease_ttl_s=600), owner="a")
    proc = subprocess.Popen(["true"])
    proc.wait()
    a.lease._stop.set()
    with a.store._lock:  # as if a process that has since died held it
        a.store._exec("UPDATE llm_router_lease SET pid = ?", (proc.pid,))
    b = Tracker(spec(lease_ttl_s=600), owner="b")
    assert b.lease.fence.epoch == 2
    a.store.close()
    b.close()


# -- the router's lease on PostgreSQL ------------------------------------------------------

def router_state(tmp_path, url: str, name: str, owner: str, **tracker):
    data = make_config(tmp_path, state_dir=str(tmp_path / name))
    data["tracker"] = {"db_url": url, "lease_ttl_s": 1.0, **tracker}
    return RouterState(parse_config(data), None, True, owner=owner)


def test_two_systems_on_one_database_the_second_router_is_refused(pg_url, tmp_path):
    a = router_state(tmp_path, pg_url, "node-a", "router-a")
    try:
        with pytest.raises(LeaseRefused, match="deployment 'default'") as info:
            router_state(tmp_path, pg_url, "node-b", "router-b")
        assert redacted(pg_url) in str(info.value) and PG_PASSWORD not in str(info.value)
        other = router_state(tmp_path, pg_url, "node-c", "router-c", deployment="desk2")
        try:  # another deployment name: its own schema, its own state
            other.overrides.apply({"daily_usd": 3})
            assert a.overrides.spec.daily_usd != 3
            assert a.kv.get("budget_overrides") is None
        finally:
            other.close()
    finally:
        a.close()


async def test_a_zombie_router_cannot_clobber_its_successors_journal(pg_url, tmp_path):
    old = router_state(tmp_path, pg_url, "node-a", "router-1")
    j_old = old.open_journal()
    j_old.append(recs(1))
    await asyncio.wait_for(j_old.synced(), 10)
    new = router_state(tmp_path, pg_url, "node-b", "router-1")  # Ray restarted it elsewhere
    j_new = new.open_journal()
    try:
        assert new.lease.fence.epoch == old.lease.fence.epoch + 1
        assert [s for s, _ in j_new.pending()] == [1]  # the predecessor's entry is replayed
        j_old.append(recs(2))  # the zombie answers one more request: refused, never written
        with pytest.raises(Fenced):
            await asyncio.wait_for(j_old.synced(), 10)
        with pytest.raises(Fenced):
            old.overrides.apply({"daily_usd": 1})
        seq = j_new.append(recs(3))
        await asyncio.wait_for(j_new.synced(), 10)
        assert seq == 2 and [s for s, _ in j_new.pending()] == [1, 2]
        assert j_new.pending()[1][1][0].request_id == "r3"
        new.overrides.apply({"daily_usd": 9})
        assert new.overrides.spec.daily_usd == 9
    finally:
        j_new.close()
        new.close()
        j_old.close()
        old.close()


def test_each_deployment_has_its_own_schema(pg_url):
    db = PgSession(PgTarget(pg_url, schema="llm_router_desk2"))
    lease = Lease(db, Role.ROUTER, "desk2", "x", where="here")
    lease.claim()
    plain = PgSession(PgTarget(pg_url))
    try:
        assert plain.fetch("SELECT to_regclass('public.llm_router_lease') AS t")[0]["t"] is None
        assert [h.deployment for h in rows(db)] == ["desk2"]
    finally:
        lease.release()
        db.close()
        plain.close()
