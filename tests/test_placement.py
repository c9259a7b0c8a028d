"""Head-node pinning of the stateful actors: the options, the config section, and a real
two-node cluster (`ray.cluster_utils.Cluster`, in a subprocess like the backtest's cluster
test) where the tracker and router, started from a task on the worker, land on the head by
default, and go to the node with a custom resource or node label when the config says so. `llm-router status` runs against the same cluster
and reports them, their node and a provider that went missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import ConfigError, parse_config
from actors.shells.placement import HEAD_RESOURCE, PlacementSpec, state_actor_options
from tests.conftest import make_config
from tests.jobs import run_job

ROOT = Path(__file__).resolve().parent.parent


def test_default_pins_to_the_head_node():
    assert PlacementSpec().actor_options() == {"resources": {HEAD_RESOURCE: 0.001}}
    assert state_actor_options(None) == {"resources": {HEAD_RESOURCE: 0.001}}
    assert PlacementSpec(state_node="any").actor_options() == {}
    custom = PlacementSpec(resources={"llm_router_state": 0.01}, label_selector={"role": "db"})
    assert custom.actor_options() == {"resources": {"llm_router_state": 0.01},
                                      "label_selector": {"role": "db"}}
    assert "llm_router_state" in custom.pinned_to


def test_the_ray_resource_is_the_one_ray_gives_the_head():
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME

    assert HEAD_RESOURCE == HEAD_NODE_RESOURCE_NAME


@pytest.mark.parametrize("section, message", [
    ({"state_node": "worker"}, r"placement\.state_node"),
    ({"state_node": "any", "resources": {"x": 1}}, "contradicts"),
    ({"resources": {"x": 0}}, r"placement\.resources.*above 0"),
    ({"node": "head"}, r"placement\.node: unknown key"),
])
def test_bad_placement_is_refused_at_load(tmp_path, section, message):
    data = make_config(tmp_path, placement=section)
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def _job(tmp: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from actors.api import connect
    from actors.shells.system import stop_system

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1, resources={"llm_router_state": 1},
                              labels={"role": "state"})
    ray.init(address=cluster.address, namespace="llm-router", log_to_driver=False)
    cluster.wait_for_nodes()
    cfg = make_config(tmp)
    for p in cfg["providers"]:  # two providers keep the 2-core machine's process count low
        p["enabled"] = p["name"] in ("llama", "mixtral")
    out: dict = {"head": cluster.head_node.node_id, "worker": worker.node_id}

    def status(*extra: str) -> tuple[int, dict]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("RAY_ADDRESS", None)
        p = subprocess.run([sys.executable, "-m", "actors.cli", "status", "--address",
                            cluster.address, "--json", *extra], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=180)
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else {"err": p.stderr})

    @ray.remote(num_cpus=0)
    def start_here(config: dict) -> None:
        """Start the system from a task on the worker (as a Serve replica or a backtest
        task may): left to Ray, actors go to the caller's node."""
        connect(config=config).complete("hello", provider="llama", max_tokens=32)

    on_worker = NodeAffinitySchedulingStrategy(worker.node_id, soft=False)
    try:
        ray.get(start_here.options(scheduling_strategy=on_worker).remote(cfg))
        out["default_rc"], out["default"] = status()
        ray.kill(ray.get_actor("provider:mixtral", namespace="llm-router"), no_restart=True)
        out["missing_rc"], out["missing"] = status()
        stop_system()
        connect(cluster.address, {**cfg, "placement": {"label_selector": {"role": "state"}}})
        out["label_rc"], out["label"] = status()
        stop_system()
        connect(cluster.address, {**cfg, "placement": {"resources": {"llm_router_state": 0.001}}})
        out["custom_rc"], out["custom"] = status()
        stop_system()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


def test_stateful_actors_on_the_head_by_default_and_where_the_config_says(tmp_path):
    res = run_job(__file__, tmp_path, timeout=900)

    def node(report: dict, name: str) -> str:
        return next(a["node_id"] for a in report["actors"] if a["name"] == name)

    d = res["default"]
    assert res["default_rc"] == 0, d
    assert node(d, "router") == node(d, "tracker") == res["head"]
    assert {a["name"] for a in d["actors"]} >= {"router", "tracker", "provider:llama",
                                                 "provider:mixtral"}
    assert all(a["state"] == "ALIVE" and a["answers"] for a in d["actors"])
    assert d["nodes"] == 2 and d["router_inflight"] == 0 and d["records"]["requests"] >= 1
    assert {p["name"]: p["breaker"] for p in d["providers"]} == {"llama": "closed",
                                                                   "mixtral": "closed"}
    m = res["missing"]
    assert res["missing_rc"] == 1  # not healthy: the router routes to a provider that is gone
    assert [a["state"] for a in m["actors"] if a["name"] == "provider:mixtral"] == ["MISSING"]
    la = res["label"]
    assert res["label_rc"] == 0, la
    assert node(la, "router") == node(la, "tracker") == res["worker"]
    c = res["custom"]
    assert res["custom_rc"] == 0, c
    assert node(c, "router") == node(c, "tracker") == res["worker"]


if __name__ == "__main__":
    print(json.dumps(_job(Path(sys.argv[1]))))
