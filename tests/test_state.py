"""An instance's state without Ray: the directory lock, budget overrides that merge and say
where each limit came from, and text at rest (journal included) following store_text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.config import parse_config
from actors.core.budget_overrides import BudgetOverrides, merge_patch
from actors.core.privacy import PREFIX, TextPolicy
from actors.core.records import AttemptRecord
from actors.routing.route import RouteRequest
from actors.shells.router_state import RouterState
from actors.stores.journal import Journal
from actors.stores.state import StateDirInUse, StateLock
from tests.conftest import make_config
from tests.test_router_core import Fake, make

ROOT = str(Path(__file__).resolve().parent.parent)
CONFIGURED = {"daily_usd": 50.0, "per_provider": {"claude": {"daily_usd": 20.0}}}


def mode(p: Path) -> str:
    return oct(p.stat().st_mode & 0o777)


# -- the lock ------------------------------------------------------------------------------

def test_a_second_instance_is_refused_naming_the_holder(tmp_path):
    first = StateLock(tmp_path / "s")
    with pytest.raises(StateDirInUse) as info:
        StateLock(tmp_path / "s", wait_s=0.2)
    msg = str(info.value)
    assert str(tmp_path / "s") in msg and f"pid {os.getpid()}" in msg and "state_dir" in msg
    first.release()
    StateLock(tmp_path / "s", wait_s=0.2).release()  # free again once released
    assert mode(tmp_path / "s") == "0o700" and mode(tmp_path / "s" / "lock") == "0o600"


_HOLDER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from actors.stores.state import StateLock
    lock = StateLock(sys.argv[1])
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_the_lock_dies_with_its_process(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _HOLDER, str(tmp_path), ROOT],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "locked" and proc.returncode < 0
    StateLock(tmp_path, wait_s=0.2).release()  # no stale lock after a SIGKILL


def test_router_state_refuses_a_directory_in_use(tmp_path):
    cfg = parse_config(make_config(tmp_path))
    state = RouterState(cfg, None, True)
    with pytest.raises(StateDirInUse):
        RouterState(cfg, None, True, lock_wait_s=0.2)
    state.close()
    RouterState(cfg, None, True).close()


# -- budget overrides ----------------------------------------------------------------------

def test_partial_changes_merge_and_persist(tmp_path):
    b = BudgetOverrides(CONFIGURED, tmp_path)
    spec = b.apply({"hourly_usd": 5})
    assert spec.hourly_usd == 5 and spec.daily_usd == 50
    assert spec.per_provider["claude"].daily_usd == 20  # not wiped by a partial update
    spec = b.apply({"per_provider": {"gpt-4-turbo": {"hourly_usd": 1}}})
    assert set(spec.per_provider) == {"claude", "gpt-4-turbo"} and spec.hourly_usd == 5
    again = BudgetOverrides(CONFIGURED, tmp_path)  # a restart re-applies them over the config
    assert again.spec == spec
    assert mode(tmp_path / "budgets-override.json") == "0o600"


def test_null_removes_a_limit_and_reset_returns_to_the_config(tmp_path):
    b = BudgetOverrides(CONFIGURED, tmp_path)
    spec = b.apply({"daily_usd": None, "per_provider": {"claude": None}})
    assert spec.daily_usd is None and spec.per_provider == {} and not spec.has_limits
    assert BudgetOverrides(CONFIGURED, tmp_path).spec == spec  # removals persist too
    assert b.reset().daily_usd == 50 and not (tmp_path / "budgets-override.json").exists()


def test_an_invalid_change_changes_nothing(tmp_path):
    b = BudgetOverrides(CONFIGURED, tmp_path)
    with pytest.raises(ValidationError) as info:
        b.apply({"per_provider": {"claude": {"daily_usd": -1}}})
    assert "daily_usd" in str(info.value)
    assert b.spec.per_provider["claude"].daily_usd == 20
    assert not (tmp_path / "budgets-override.json").exists()


def test_sources_say_config_or_override_with_its_time(tmp_path):
    clock = [1_795_000_000.0]
    b = BudgetOverrides(CONFIGURED, tmp_path, clock=lambda: clock[0])
    assert b.summary() == ("budgets in force: global daily_usd $50.00 (config); "
                           "claude daily_usd $20.00 (config)")
    b.apply({"hourly_usd": 5})
    line = BudgetOverrides(CONFIGURED, tmp_path).summary()
    assert "global hourly_usd $5.00 (run-time override set 2026-11-18 " in line
    assert "claude daily_usd $20.00 (config)" in line
    b.apply({"per_provider": {"claude": None}})
    line = b.summary()
    assert "claude daily_usd removed (run-time override set" in line
    assert BudgetOverrides({}, tmp_path / "none").summary() == "budgets: no spend limits in force"


def test_an_earlier_versions_whole_spec_override_still_loads(tmp_path):
    (tmp_path / "budgets-override.json").write_text(json.dumps({"hourly_usd": 2.0}))
    b = BudgetOverrides(CONFIGURED, tmp_path)  # it replaced the whole spec back then
    assert b.spec.hourly_usd == 2 and b.spec.daily_usd is None and b.spec.per_provider == {}
    assert "run-time override" in b.summary()


def test_merge_patch_is_rfc_7396():
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}}) == \
        {"a": 1, "b": {"d": 3, "e": 4}}
    assert merge_patch({"a": {"b": 1}}, {"a": 7}) == {"a": 7}


# -- text at rest ---------------------------------------------------------------------------

def test_text_policy():
    h = TextPolicy("hash", b"key")
    d = h.digest("prompt")
    assert d.startswith(PREFIX) and h.apply("prompt") == d and h.apply(d) == d
    assert TextPolicy("hash", b"other").apply("prompt") != d
    assert TextPolicy("none").apply("prompt") is None and TextPolicy("full").apply("x") == "x"
    with pytest.raises(ValueError, match="HMAC key"):
        TextPolicy("hash")


@pytest.mark.parametrize("store_text", ["hash", "none"])
async def test_the_journal_honours_store_text(tmp_path, store_text):
    """What the router hands its journal already follows tracker.store_text."""
    cfg = parse_config(make_config(tmp_path, tracker={"db_path": str(tmp_path / "a.sqlite3"),
                                                      "store_text": store_text}))
    state = RouterState(cfg, None, True)
    router, sink = make(Fake())
    router.keep_text = state.text.apply
    journal = Journal(state.journal_path)
    router._sink = lambda records: (sink.extend(records), journal.append(records))
    secret = "SECRET-PROMPT-about-NVDA"
    await router.route(RouteRequest(messages=[{"role": "user", "content": secret}]))
    journal.close()
    state.close()
    att = next(r for r in sink if isinstance(r, AttemptRecord))
    raw = state.journal_path.read_bytes()
    assert b"SECRET" not in raw and b"direction" not in raw  # neither prompt nor answer
    if store_text == "hash":
        assert att.prompt.startswith(PREFIX) and att.response.startswith(PREFIX)
    else:
        assert att.prompt is None and att.response is None
    assert mode(state.journal_path) == "0o600"


# -- which instance a command starts -------------------------------------------------------

def _args(**kw):
    from argparse import Namespace

    return Namespace(**({"config": None, "address": None, "state_dir": None} | kw))


def test_the_demo_and_simulated_backtests_never_use_the_users_state(tmp_path, monkeypatch):
    from actors.backtest.command import instance_config
    from actors.config import load_config

    monkeypatch.delenv("LLM_ROUTER_STATE_DIR", raising=False)
    users = load_config()
    demo = instance_config(users, _args(), tmp_path / "runs" / "demo-1", simulate=True)
    assert demo.simulate and demo.state_path == tmp_path / "runs" / "demo-1" / "state"
    assert demo.tracker.db_path == (demo.state_path / "audit.sqlite3")
    real = instance_config(users, _args(), tmp_path / "runs" / "bt-1", simulate=False)
    assert not real.simulate and real.state_dir == users.state_dir  # the user's instance
    mine = instance_config(users, _args(state_dir=str(tmp_path / "s")), tmp_path, simulate=True)
    assert mine.state_path == tmp_path / "s"


def test_backtest_request_ids_stay_safe_whatever_the_symbol():
    from datetime import datetime

    from actors.backtest.plan import BarJob
    from actors.backtest.runner import request_id
    from actors.stores.idempotency import safe_id

    job = BarJob("MY DATA", "1d", 3, datetime(2008, 1, 2), "analysis", "bull", 1.0, 0.0, 0.0,
                 RouteRequest(messages=[{"role": "user", "content": "x"}]), "n")
    rid = request_id("run-1", job, "cost-aware", gen=2)
    assert safe_id(rid) and rid.startswith("bt:run-1:") and rid.endswith("~2")
    plain = request_id("run-1", job.__class__(**{**job.__dict__, "symbol": "SPX"}), "cost-aware")
    assert plain == "bt:run-1:cost-aware:analysis:SPX:1d:20080102T000000"


_PREDECESSOR = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from actors.stores.state import StateLock
    lock = StateLock(sys.argv[1], owner="router-actor-1")
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))  # a predecessor slow to die
    open(sys.argv[1] + "/exiting", "w").close()  # still holding the lock here
""")


def test_a_restarted_router_waits_for_its_predecessor_but_refuses_strangers(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _PREDECESSOR, str(tmp_path), ROOT, "1.5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StateDirInUse):  # another instance: refused after its short wait
            StateLock(tmp_path, wait_s=0.2, owner="router-actor-2")
        # the same actor restarted: waits past wait_s until the old process is gone
        StateLock(tmp_path, wait_s=0.2, owner="router-actor-1", predecessor_wait_s=60).release()
        assert (tmp_path / "exiting").exists()  # it got the lock only as the predecessor went
    finally:
        proc.kill()
        proc.wait()
