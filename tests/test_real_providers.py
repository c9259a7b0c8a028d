"""Real providers by default, never a silent fake answer, one instance per state directory.

The "real" provider here is claude talking its real wire format to a loopback server (the
simulator process, which checks that a key is sent): real mode is decided by the config,
not by where the bytes go, and nothing leaves the machine. The other providers' key
variables are unset in the workers' environment, as a mistyped variable name would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray
import yaml

from actors.api import RouterClient, connect
from actors.config import ConfigError
from actors.core.keys import MissingKeys
from actors.core.records import AttemptRecord
from actors.routing.route import RoutingError
from actors.simulator import SimulatorProcess, simulator_base_url
from actors.stores.audit import AuditStore
from tests.conftest import make_config, restart_router

ROOT = Path(__file__).resolve().parent.parent
UNSET = "LLM_ROUTER_TEST_NO_SUCH_KEY_{}"


def real_config(tmp: Path, sim_url: str, *, optional: bool, **overrides) -> dict:
    data = make_config(tmp, **overrides)
    data["simulator"] = {"mode": "never"}
    for i, p in enumerate(data["providers"]):
        if p["name"] == "claude":  # its key (conftest's SECRET) is in every worker's env
            p["base_url"] = simulator_base_url("anthropic", sim_url)
        else:
            p["api_key_env"] = UNSET.format(i)
            p["optional"] = optional
    return data


@pytest.fixture(scope="module")
def upstream():
    with SimulatorProcess(latency_scale=0.0) as sim:
        yield sim


def _names() -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == "llm-router"}


def test_missing_keys_stop_start_up_naming_each_provider_and_variable(ray_cluster, tmp_path,
                                                                       upstream):
    with pytest.raises(MissingKeys) as info:
        connect(config=real_config(tmp_path, upstream.url, optional=False))
    msg = str(info.value)
    for i, name in enumerate(["gemini", "gpt-4-turbo", "mixtral", "llama"], start=1):
        assert f"provider {name}: ${UNSET.format(i)} is not set" in msg
    assert "claude" not in msg.split("(read by")[0] and "simulate=True" in msg
    assert not {n for n in _names() if n.startswith("provider:") and n != "provider:claude"}
    assert "router" not in _names()  # nothing else was started, no state touched
    assert not (tmp_path / "router-journal.jsonl").exists()
    ray.kill(ray.get_actor("provider:claude", namespace="llm-router"), no_restart=True)


def test_connect_without_keys_tells_how_to_opt_in(ray_cluster, tmp_path, upstream):
    """A notebook's plain connect() with the shipped config and no keys: a clear error."""
    data = real_config(tmp_path, upstream.url, optional=False)
    data["providers"] = [p for p in data["providers"] if p["name"] != "claude"]
    with pytest.raises(MissingKeys, match=r"connect\(simulate=True\)"):
        connect(config=data)
    llm: RouterClient = connect(config=data, simulate=True)  # the explicit choice works
    try:
        r = llm.complete("hi")
        assert r.simulated and r.trace.simulated
    finally:
        llm.shutdown(stop_ray=False)


@pytest.fixture(scope="module")
def real(ray_cluster, tmp_path_factory, upstream):
    tmp = tmp_path_factory.mktemp("real")
    # Yesterday's simulated demo spend in the same audit trail: $2.10 this very hour.
    AuditStore(tmp / "audit.sqlite3").write_batch([AttemptRecord(
        request_id="demo-1", attempt=1, ts=time.time(), provider="claude",
        model="claude-sonnet-4-5", ok=True, cost_usd=2.10, simulated=True)])
    cfg = real_config(tmp, upstream.url, optional=True, budgets={"hourly_usd": 1.0})
    llm = connect(config=cfg)
    yield llm, cfg, tmp
    llm.shutdown(stop_ray=False)


def test_optional_providers_without_keys_are_left_out(real):
    llm, _, _ = real
    assert llm.config.names == ["claude"] and list(llm.status().index) == ["claude"]
    assert not llm.status().loc["claude", "simulated"]


def test_a_real_answer_is_marked_real_everywhere(real):
    llm, _, _ = real
    r = llm.complete("SPY: long or short?", output="trade_signal", max_tokens=300)
    assert r.provider == "claude" and not r.simulated and not r.trace.simulated
    rows = llm.audit(r.request_id)
    assert [row["simulated"] for row in rows] == [False, False]


def test_simulated_spend_never_counts_against_real_budgets(real):
    llm, _, _ = real
    b = llm.budgets().set_index(["scope", "window"])
    assert b.loc[("*", "hourly"), "spent_usd"] < 0.5  # not the $2.10 of made-up spend
    assert b.loc[("*", "hourly"), "source"] == "global hourly_usd $1.00 (config)"
    llm.flush()
    costs = llm.costs("hour")
    assert costs.xs(True, level="simulated")["cost_usd"].sum() == pytest.approx(2.10)


def test_an_unreachable_real_provider_never_falls_back_to_a_made_up_answer(real, upstream):
    llm, _, _ = real
    upstream.set_profile("claude-sonnet-4-5", down=True)
    try:
        with pytest.raises(RoutingError) as info:
            llm.complete("SPY: long or short?", output="trade_signal", timeout=20)
    finally:
        upstream.reset_profile("claude-sonnet-4-5")
    err = info.value
    assert {a.provider for a in err.trace.attempts} == {"claude"} and not err.trace.simulated
    assert err.error_class.value == "no_provider"


def test_a_simulated_client_cannot_attach_to_real_providers(real, tmp_path):
    with pytest.raises(ConfigError, match="already running") as info:
        connect(config=make_config(tmp_path))  # simulator.mode: always
    assert "are real" in str(info.value) and "never mix" in str(info.value)
    assert real[0].complete("still here?").provider == "claude"  # nothing was stopped


def test_budget_changes_merge_and_are_reported_after_a_restart(real):
    llm, _, _ = real
    llm.set_budgets({"daily_usd": 3, "per_provider": {"claude": {"hourly_usd": 0.9}}})
    llm.set_budgets({"daily_usd": 4})  # partial: keeps the per-provider cap and the hourly
    b = llm.budgets().set_index(["scope", "window"])
    assert b.loc[("*", "daily"), "limit_usd"] == 4 and b.loc[("*", "hourly"), "limit_usd"] == 1
    assert b.loc[("claude", "hourly"), "limit_usd"] == 0.9
    restart_router(llm)
    about = llm.describe()["budgets"]
    assert "global hourly_usd $1.00 (config)" in about
    assert "global daily_usd $4.00 (run-time override set " in about
    assert "claude hourly_usd $0.90 (run-time override set " in about
    llm.reset_budgets()
    assert "override" not in llm.describe()["budgets"]


_SECOND = textwrap.dedent("""
    import sys, yaml
    sys.path.insert(0, sys.argv[2])
    from actors import connect
    try:
        connect(config=yaml.safe_load(open(sys.argv[1])), num_cpus=1)
    except Exception as exc:
        print(type(exc).__name__, exc, flush=True)
        sys.exit(3)
    print("STARTED", flush=True)
""")


def test_a_second_instance_on_the_same_state_directory_refuses(real, tmp_path):
    """Another `connect()` / `llm-router serve` (its own local Ray) on the directory in use."""
    _, cfg, state = real
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-c", _SECOND, str(path), str(ROOT)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
    assert "StateDirInUse" in proc.stdout and str(state) in proc.stdout
    assert "in use by another llm-router instance (router pid" in proc.stdout
    assert real[0].complete("and the first one still answers").provider == "claude"
