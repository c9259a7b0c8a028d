"""Shared fixtures. One Ray instance for the whole session (ray.init costs ≈8 s here);
modules that need the router's actors start them on it with their own config."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
import yaml

from actors.config import DEFAULT_CONFIG, ENV_CONFIG
from serve.ingress import INGRESS_ENV
from tests.waiting import wait_until  # noqa: F401  (the one helper; older tests import it here)

#: A fake key in every worker's environment, so key-leak tests can look for it.
SECRET = "sk-ant-test-SECRET-7f3a9c"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def _config_env_is_restored():
    """`llm-router --config X` exports $LLM_ROUTER_CONFIG for Ray workers; a test that runs the
    CLI must not leave it behind for the tests after it (they would load its config)."""
    saved = os.environ.get(ENV_CONFIG)
    yield
    if saved is None:
        os.environ.pop(ENV_CONFIG, None)
    else:
        os.environ[ENV_CONFIG] = saved


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    os.environ["ANTHROPIC_API_KEY"] = SECRET  # workers inherit it from ray.init
    # Serve's patience for a proxy to come up, as `llm-router serve` sets it: Ray's 15 s
    # failed the SQLite chaos run's serve.start at load ~60 (the proxy killed, never ran)
    patience = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
    os.environ.setdefault(patience, INGRESS_ENV["proxy"][patience])
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="llm-router",
             log_to_driver=False)  # never join a cluster someone else started
    yield ray
    ray.shutdown()


def make_config(tmp_path, **overrides: Any) -> dict[str, Any]:
    """The shipped config, simulated, with a private audit DB and fast failure settings."""
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["simulator"] = {"mode": "always", "latency_scale": 0.02}
    data["tracker"] = {"db_path": str(tmp_path / "audit.sqlite3")}
    for p in data["providers"]:
        p["breaker"].update(open_s=1.0, max_open_s=5.0, consecutive_failures=3, min_requests=5)
        p["retry"].update(base_s=0.05, max_s=0.5)
    for key, value in overrides.items():
        data[key] = value
    return data


def sim(llm: Any, model: str, **fields: Any) -> None:
    """Patch a simulated model's profile (faults, latency, limits) at run time."""
    import ray

    ray.get(llm.simulator.set_profile.remote(model, fields))


def sim_count(llm: Any, model: str, what: str) -> int:
    """One of the simulator's own counts for `model` (requests, streams_cancelled...)."""
    import ray

    stats = ray.get(llm.simulator.stats.remote())
    return stats["models"].get(model, {}).get(what, 0)


def sim_reset(llm: Any, model: str) -> None:
    import ray

    ray.get(llm.simulator.reset_profile.remote(model))


def restart_router(llm: Any, timeout_s: float = 60.0) -> None:
    """Kill the router actor and wait until its restarted process answers (a new pid)."""
    import ray

    def pid() -> int | None:
        """The router's pid; None while it restarts (only Ray's "not answering" errors)."""
        try:
            return ray.get(llm.handles.router.__ray_call__.remote(lambda self: os.getpid()),
                           timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return None

    old = pid()
    assert old is not None, "the router was not running before the kill"
    ray.kill(llm.handles.router, no_restart=False)
    wait_until(lambda: pid() not in (None, old), timeout_s, every=0.2,
               what="the router restarted (a new pid answering)")


# -- PostgreSQL: a real server started by the tests themselves (tests/pg_server.py) -----------

PG_ROLE, PG_PASSWORD = "router", "router-test-pw"


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL for the session (system binaries, run as the `postgres`
    user when we are root); skipped only where no PostgreSQL is installed at all."""
    from tests import pg_server as pgs

    if pgs.find_bindir() is None:
        pytest.skip("no PostgreSQL server binaries on this machine")
    server = pgs.start()
    server.create_database("llm_router_template", PG_ROLE, PG_PASSWORD)
    saved = os.environ.get("LLM_ROUTER_DB_PASSWORD")
    os.environ["LLM_ROUTER_DB_PASSWORD"] = PG_PASSWORD  # Ray workers started later inherit it
    yield server
    server.stop()
    if saved is None:
        os.environ.pop("LLM_ROUTER_DB_PASSWORD", None)
    else:
        os.environ["LLM_ROUTER_DB_PASSWORD"] = saved


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """A fresh, empty database owned by the application role; its password-less URL."""
    import re
    import uuid

    import psycopg
    from psycopg import sql

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    with psycopg.connect(pg_server.admin_conninfo(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                 sql.Identifier(PG_ROLE)))
    yield pg_server.url(PG_ROLE, name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """Open audit stores on each backend: `backend(name="a.db", **kw)`; same name, same store."""
    from actors.audit import AuditStore

    if request.param == "sqlite":
        return lambda name="a.db", **kw: AuditStore(tmp_path / name, **kw)
    from actors.audit_pg import PgAuditStore
    from actors.pg import PgTarget

    url = request.getfixturevalue("pg_url")
    return lambda name="a.db", **kw: PgAuditStore(PgTarget(url), **kw)
