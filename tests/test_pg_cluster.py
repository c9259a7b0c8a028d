"""Losing the node that holds the tracker and the router, with PostgreSQL: nothing answered
is lost and the budgets are intact.

A two-node cluster (`ray.cluster_utils.Cluster`, in a subprocess like the other cluster
tests) with a real PostgreSQL server (tests/pg_server.py). The head-node pinning is
overridden: the tracker and the router ask for a custom resource only the worker has (the
simulator and the provider actors run on the head).
Requests flow from the driver (on the head) with request ids; once some are answered the
worker node is removed without warning (its processes killed) and a fresh node with the
resource joins — a replacement machine. The actors restart there with empty disks; the
callers re-send what failed under the same ids. Afterwards every answered request has
exactly one request row and its attempt rows in the database, the run-time budget override
still holds, and the restarted router's budget ledger counts exactly the spend the
database holds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from tests.jobs import run_job

ENV_URL = "LLM_ROUTER_TEST_DB_URL"
BEFORE_KILL, TOTAL, CALLERS = 12, 36, 4


def _node_of(handle) -> str:
    import ray

    return ray.get(handle.__ray_call__.remote(
        lambda self: ray.get_runtime_context().get_node_id()), timeout=120)


def _start_cluster():
    """The head node; once more if Ray itself timed out starting on an overloaded machine."""
    from ray.cluster_utils import Cluster

    for tries_left in (1, 0):
        try:
            return Cluster(initialize_head=True,
                           head_node_args={"num_cpus": 1, "include_dashboard": False})
        except Exception as exc:
            if tries_left == 0 or "timed out during startup" not in str(exc):
                raise
    raise AssertionError("unreachable")


def _job(tmp: Path) -> dict:
    import psycopg
    import ray

    from actors.api import connect
    from tests.conftest import make_config
    from tests.waiting import wait_until

    url = os.environ[ENV_URL]
    cluster = _start_cluster()
    ray.init(address=cluster.address, namespace="llm-router", log_to_driver=False)
    cfg = make_config(tmp)
    for p in cfg["providers"]:  # two providers keep the 2-core machine's process count low
        p["enabled"] = p["name"] in ("llama", "mixtral")
    cfg["tracker"] = {"db_url": url}
    cfg["placement"] = {"resources": {"llm_router_state": 0.001}}
    # The node with the state resource joins once the simulator and the provider actors run
    # (on the head, the only node then): the router, created after them, waits for it. So
    # the node we lose holds the tracker and the router, and nothing else. (connect() waits
    # for the router, so it runs in a thread; Ray starts nodes from the main thread only.)
    started: dict = {}
    starter = threading.Thread(target=lambda: started.update(llm=connect(cluster.address, cfg)))
    starter.start()

    def router_exists() -> bool:
        try:
            return ray.get_actor("router", namespace="llm-router") is not None
        except ValueError:
            return False

    wait_until(router_exists, timeout=300)
    first = cluster.add_node(num_cpus=1, resources={"llm_router_state": 1})
    starter.join(timeout=600)
    llm = started["llm"]
    out: dict = {"head": cluster.head_node.node_id, "first": first.node_id}
    try:
        h = llm.handles
        out["router_node"], out["tracker_node"] = _node_of(h.router), _node_of(h.tracker)
        out["provider_nodes"] = sorted({_node_of(a) for a in h.providers.values()})
        llm.set_budgets({"daily_usd": 123.0})

        answered: dict[str, float] = {}
        failures: list[str] = []
        lock = threading.Lock()
        next_i = iter(range(TOTAL))

        def caller() -> None:
            for i in next_i:
                rid = f"q{i}"
                deadline = time.monotonic() + 240
                while True:  # re-send under the same id until answered: idempotent
                    try:
                        res = llm.complete(f"bar {i}: long or short?", request_id=rid,
                                           max_tokens=32, timeout=60)
                        with lock:
                            answered[rid] = res.cost_usd
                        break
                    except Exception as exc:
                        with lock:
                            failures.append(f"{time.monotonic() - t0:.1f}s {rid} "
                                            f"{type(exc).__name__}: {str(exc)[:300]}")
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)  # back off while the actors restart

        t0 = time.monotonic()
        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for t in threads:
            t.start()
        wait_until(lambda: len(answered) >= BEFORE_KILL, timeout=300)  # requests flowing
        out["answered_at_kill"] = len(answered)
        out["killed_at_s"] = round(time.monotonic() - t0, 1)
        cluster.remove_node(first, allow_graceful=False)
        second = cluster.add_node(num_cpus=1, resources={"llm_router_state": 1})
        out["second"] = second.node_id
        for t in threads:
            t.join()
        out["answered"] = sorted(answered)
        out["failures"] = "\n".join(failures[:3] + failures[-5:])
        out["router_node_after"] = _node_of(h.router)
        out["tracker_node_after"] = _node_of(h.tracker)
        llm.flush(timeout=120)
        budgets = llm.budgets().reset_index()
        daily = budgets[(budgets["scope"] == "*") & (budgets["window"] == "daily")].iloc[0]
        out["daily_limit"] = float(daily["limit_usd"])
        out["daily_source"] = str(daily["source"])
        out["ledger_daily_spend"] = float(daily["spent_usd"])
        pw = os.environ["LLM_ROUTER_DB_PASSWORD"]
        with psycopg.connect(url, password=pw) as db:
            out["request_rows"] = dict(db.execute(
                "SELECT request_id, COUNT(*) FROM requests GROUP BY 1").fetchall())
            out["attempted"] = sorted(r[0] for r in db.execute(
                "SELECT DISTINCT request_id FROM attempts WHERE ok = 1").fetchall())
            out["db_spend"] = float(db.execute(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM attempts WHERE simulated = 1 "
                "AND ts >= %s", (time.time() - (time.time() % 86400),)).fetchone()[0])
            out["journal_left"] = db.execute("SELECT COUNT(*) FROM router_journal").fetchone()[0]
    finally:
        llm.shutdown()
        cluster.shutdown()
    print(json.dumps(out), file=sys.stderr)  # what the job saw, should an assert fail
    return out


def test_losing_the_state_node_loses_nothing_answered(tmp_path, pg_url, monkeypatch):
    monkeypatch.setenv(ENV_URL, pg_url)
    res = run_job(__file__, tmp_path, timeout=900)
    assert res["router_node"] == res["tracker_node"] == res["first"], res  # pinning overridden
    assert res["provider_nodes"] == [res["head"]]  # only the state goes down with the node
    assert res["router_node_after"] == res["tracker_node_after"] == res["second"]
    assert BEFORE_KILL <= res["answered_at_kill"] < TOTAL
    assert len(res["answered"]) == TOTAL, f"killed at {res['killed_at_s']} s\n{res['failures']}"
    rows = res["request_rows"]
    missing = [rid for rid in res["answered"] if rid not in rows]
    assert not missing, f"answered but not in the audit trail: {missing}"
    assert all(rows[rid] == 1 for rid in res["answered"])  # exactly one outcome each
    assert set(res["answered"]) <= set(res["attempted"])  # and the attempt that answered
    assert res["journal_left"] == 0  # everything journaled reached the tracker
    assert res["daily_limit"] == 123.0 and "run-time override" in res["daily_source"]
    assert abs(res["ledger_daily_spend"] - res["db_spend"]) < 1e-9
    assert res["db_spend"] > 0


if __name__ == "__main__":
    print(json.dumps(_job(Path(sys.argv[1]))))
