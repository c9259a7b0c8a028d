"""The router's state in PostgreSQL (real server, tests/pg_server.py): what a router restarted
on another node — another state directory, same database — finds there."""

from __future__ import annotations

import asyncio

import pytest

from actors.config import parse_config
from actors.core.budget_overrides import BudgetOverrides
from actors.routing.route import RoutingError
from actors.shells.router_state import RouterState, decode_outcome, encode_outcome
from actors.stores.idempotency import IdempotencyBook, IdempotencySpec
from actors.stores.pg import PgTarget
from actors.stores.pg_journal import PgJournal
from actors.stores.pg_state import BUDGET_OVERRIDES, PgIdempotencyStore, PgKeyValue
from tests.conftest import make_config
from tests.test_idempotency import KEY, req, routed
from tests.test_journal import recs
from tests.test_router_core import Fake

CONFIGURED = {"daily_usd": 50.0, "per_provider": {"claude": {"hourly_usd": 2.0}}}


def test_budget_overrides_follow_the_router_to_another_node(pg_url, tmp_path):
    kv = PgKeyValue(PgTarget(pg_url))
    here = BudgetOverrides(CONFIGURED, tmp_path / "node-a", saved=kv.slot(BUDGET_OVERRIDES))
    here.apply({"hourly_usd": 5, "per_provider": {"claude": None}})
    elsewhere = BudgetOverrides(CONFIGURED, tmp_path / "node-b",  # nothing on this disk
                                saved=PgKeyValue(PgTarget(pg_url)).slot(BUDGET_OVERRIDES))
    assert elsewhere.spec == here.spec and elsewhere.spec.hourly_usd == 5
    assert "claude" not in elsewhere.spec.per_provider
    assert "run-time override" in elsewhere.summary()
    assert not (tmp_path / "node-a" / "budgets-override.json").exists()
    here.reset()
    assert BudgetOverrides(CONFIGURED, tmp_path / "c", saved=kv.slot(BUDGET_OVERRIDES)).patch == {}


async def test_journal_commits_and_comes_back_on_another_node(pg_url):
    j = PgJournal(PgTarget(pg_url))
    seqs = [j.append(recs(i)) for i in range(5)]
    await asyncio.wait_for(j.synced(), 10)  # the group commit holds all five
    assert j.committed == seqs[-1]
    j.ack([seqs[0], seqs[1], seqs[3]])
    j.close()  # writes what is queued (the acks) before it closes
    again = PgJournal(PgTarget(pg_url))
    pending = again.pending()
    assert [s for s, _ in pending] == [3, 5]
    assert pending[0][1][1].request_id == "r2"
    assert again.append(recs(9)) == 6  # numbering continues after the highest kept entry
    await asyncio.wait_for(again.synced(), 10)
    again.ack([3, 5, 6])
    again.close()
    assert PgJournal(PgTarget(pg_url)).pending() == []


def pg_book(url: str) -> IdempotencyBook:
    return IdempotencyBook(IdempotencySpec(), PgIdempotencyStore(PgTarget(url)), key=KEY,
                           kept=(RoutingError,), encode=encode_outcome, decode=decode_outcome)


async def test_idempotent_outcomes_replay_after_a_restart_elsewhere(pg_url):
    router, _ = routed(Fake(), pg_book(pg_url))
    first = await router.route(req())
    await router.idempotency.flush()
    router.idempotency.close()
    fake2 = Fake()
    router2, sink2 = routed(fake2, pg_book(pg_url))  # empty memory, another node
    again = await router2.route(req())
    assert again.replayed and again.text == first.text and fake2.calls == [] and sink2 == []
    with pytest.raises(RoutingError, match="different request"):
        await router2.route(req("changed"))
    fresh = await router2.route(req(rid=None))  # a generated id: routed, no lookup needed
    assert not fresh.replayed and len(fake2.calls) == 1


def test_router_state_lives_in_the_database(pg_url, tmp_path, monkeypatch):
    monkeypatch.delenv("LLM_ROUTER_HMAC_KEY", raising=False)
    data = make_config(tmp_path)
    data["tracker"] = {"db_url": pg_url}
    a = RouterState(parse_config(data | {"state_dir": str(tmp_path / "a")}), None, True)
    a.overrides.apply({"daily_usd": 7})
    a.close()
    b = RouterState(parse_config(data | {"state_dir": str(tmp_path / "b")}), None, True)
    try:
        assert b.overrides.spec.daily_usd == 7
        assert isinstance(b.book.store, PgIdempotencyStore)
        assert isinstance(b.open_journal(), PgJournal)
        key = PgKeyValue(PgTarget(pg_url)).hmac_key()
        assert b.book._key == key  # same fingerprints on every node
    finally:
        b.close()
    assert not any((tmp_path / d / f).exists() for d in "ab"
                   for f in ("budgets-override.json", "idempotency.sqlite3", "hmac.key"))


def test_a_bad_db_url_is_a_clear_config_error(tmp_path):
    from actors.config import ConfigError
    from actors.shells.tracker import TrackerSpec

    for url, words in (("postgresql://router:pw@db/x", "must not hold the password"),
                       ("sqlite:///x.db", "must start with postgresql://"),
                       ("postgresql://router@db/", "names no database")):
        with pytest.raises(ConfigError, match=words) as info:
            TrackerSpec.from_config({"db_url": url})
        assert "tracker.db_url" in str(info.value) and ":pw@" not in str(info.value)
