"""A batch-mode backtest whose driver is SIGKILLed — after a job's intent is journaled but
before it is submitted, after it is submitted but before its id is journaled, and while
its job is being polled — then resumed with the same run id: the simulator (a real HTTP
server) received every bar exactly once as a batch item, in one job, and every bar is
stored and paid once.

The driver is the real command line in a subprocess attached to the session's Ray
instance (as in test_backtest_kill.py): the kill takes only that process; the router and
the simulator live on, as a provider's batch jobs do when a driver dies.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from tests.conftest import make_config, wait_until
from tests.test_backtest_batch import batches, only, sim_counts

ROOT = Path(__file__).resolve().parent.parent
BARS = 12


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    from actors.api import connect

    tmp = tmp_path_factory.mktemp("batch-kill")
    cfg = make_config(tmp)
    client = connect(config=cfg)
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    yield client, tmp / "config.yaml"
    client.reset_budgets()
    client.shutdown(stop_ray=False)


def backtest(config: Path, runs: Path, run_id: str, start: str,
             kill_at: str | None = None) -> subprocess.Popen[str]:
    import ray

    driver = ["-m", "tests.kill_driver", kill_at] if kill_at else ["-m", "actors.cli"]
    argv = [sys.executable, *driver, "--config", str(config), "backtest",
            "--address", ray.get_runtime_context().gcs_address, "--run-id", run_id,
            "--runs-dir", str(runs), "--data", "sample:sp500", "--start", start,
            "--limit", str(BARS), "--batch", "--batch-poll", "0.1", "--no-cache",
            "--no-progress", "--no-feedback"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def paid(llm) -> int:
    llm.flush()
    costs = llm.costs("hour")
    return int(costs["requests"].sum()) if len(costs) else 0


def journal(runs: Path, run_id: str) -> list[str]:
    path = runs / run_id / "batches.log"
    return path.read_text().splitlines() if path.exists() else []


def resume_and_check(client, config: Path, runs: Path, run_id: str, start: str,
                     b0: dict, paid0: int) -> None:
    proc = backtest(config, runs, run_id, start)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    b1, _ = sim_counts(client)
    # what the simulator received: one job, each bar once
    assert b1["jobs"] - b0["jobs"] == 1
    assert b1["items"] - b0["items"] == BARS
    assert b1["distinct_items"] - b0["distinct_items"] == BARS
    parts = sorted((runs / run_id / "results").glob("part-*.parquet"))
    df = pd.concat([pd.read_parquet(p) for p in parts])
    assert len(df) == BARS and df["key"].is_unique and df["ok"].all()
    assert set(df["provider"]) == {"claude"}
    assert paid(client) - paid0 == BARS  # every bar paid (and recorded) once
    skipped, sent, recovered = map(int, re.search(
        r"\((\d+) already stored, (\d+) sent, (\d+) recovered", out).groups())
    assert skipped == 0 and sent == 0  # nothing new submitted by the resume


@pytest.mark.parametrize("point", ["intent", "submitted"])
def test_killed_around_submitting_resumes_without_submitting_twice(llm, tmp_path, point):
    client, config = llm
    only(client, "claude")
    batches(client, delay_s=0.3, item_failure=0.0, item_expired=0.0)
    runs, run_id = tmp_path / "runs", f"kill-{point}"
    start = "2008-03-01" if point == "intent" else "2008-05-01"
    b0, _ = sim_counts(client)
    paid0 = paid(client)

    proc = backtest(config, runs, run_id, start, kill_at=point)
    proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    lines = journal(runs, run_id)
    assert len(lines) == 1 and '"intent"' in lines[0]  # the job's id never got journaled
    b_kill, _ = sim_counts(client)
    # the fault landed where it should: not submitted / submitted
    assert b_kill["jobs"] - b0["jobs"] == (0 if point == "intent" else 1)

    resume_and_check(client, config, runs, run_id, start, b0, paid0)
    if point == "submitted":  # found again by its tag, not submitted again
        assert any('"submitted"' in x for x in journal(runs, run_id))


def test_killed_while_polling_resumes_by_polling_the_same_job(llm, tmp_path):
    client, config = llm
    only(client, "claude")
    batches(client, delay_s=6.0, item_failure=0.0, item_expired=0.0)
    runs, run_id, start = tmp_path / "runs", "kill-polling", "2008-07-01"
    b0, _ = sim_counts(client)
    paid0 = paid(client)

    proc = backtest(config, runs, run_id, start)
    try:
        wait_until(lambda: any('"submitted"' in x for x in journal(runs, run_id))
                   or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, "the run ended before it could be killed"
        url = client.handles.simulator_url
        listed = httpx.get(f"{url}/v1/messages/batches", headers={"x-api-key": "k"},
                           trust_env=False).json()["data"]
        assert listed[0]["processing_status"] == "in_progress"  # killed while it runs
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    batches(client, delay_s=0.3)
    resume_and_check(client, config, runs, run_id, start, b0, paid0)
