"""A backtest on a two-node cluster (`ray.cluster_utils.Cluster`): planning tasks run on both
nodes and every bar is routed once.

The cluster needs its own Ray instance, so the job runs in a subprocess (this file, run as
a script) and reports back as JSON; the test session's shared Ray instance is untouched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.jobs import run_job


def _job(tmp: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from actors.api import connect
    from actors.backtest import BacktestSpec, SeriesSpec, run_backtest
    from tests.conftest import make_config

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, namespace="llm-router", log_to_driver=False)
    cluster.wait_for_nodes()
    cfg = make_config(tmp)
    for p in cfg["providers"]:  # two providers keep the 2-core machine's process count low
        p["enabled"] = p["name"] in ("llama", "mixtral")
    llm = connect(cluster.address, cfg)
    try:
        spec = BacktestSpec(run_id="two-nodes", series=[SeriesSpec(source="sample:sp500"),
                                                        SeriesSpec(source="sample:nasdaq")],
                            start="2010-01-01", limit=48, chunk_bars=16,
                            policies=["latency-aware"], runs_dir=tmp / "runs")
        out = run_backtest(llm, spec, progress=False, write_report=False)
        df = out.results
        return {"complete": out.complete, "rows": len(df), "unique": int(df["key"].nunique()),
                "ok": int(df["ok"].sum()), "symbols": sorted(df["symbol"].unique()),
                "planner_nodes": sorted(df["planner_node"].unique()),
                "head": cluster.head_node.node_id, "worker": worker.node_id,
                "alive": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])}
    finally:
        llm.shutdown()
        cluster.shutdown()


def test_backtest_plans_on_both_nodes_of_a_two_node_cluster(tmp_path):
    res = run_job(__file__, tmp_path, timeout=600)
    assert res["complete"] and res["rows"] == res["unique"] == res["ok"] == 96
    assert res["symbols"] == ["IXIC", "SPX"]
    assert sorted([res["head"], res["worker"]]) == res["alive"]
    assert set(res["planner_nodes"]) == {res["head"], res["worker"]}  # work on both nodes


if __name__ == "__main__":
    print(json.dumps(_job(Path(sys.argv[1]))))
