"""A backtest whose driver process is SIGKILLed mid-run, then started again with the same run
id (issue 6): every bar ends up stored exactly once, none is paid twice, and what a kill
can leave half-written does not break the resume.

The driver is the real command line (`llm-router backtest`) in a subprocess attached to the
session's Ray instance, as a second driver on a shared cluster would be: the kill takes
only that process; the router's actors live on, so requests in flight at the kill are
answered, recorded, and rebuilt from the audit trail on resume rather than sent again.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import make_config, sim

ROOT = Path(__file__).resolve().parent.parent
BARS = 120
POLICIES = ["accuracy-first", "cost-aware"]
TOTAL = BARS * len(POLICIES)


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    from actors.api import connect

    tmp = tmp_path_factory.mktemp("kill")
    cfg = make_config(tmp)
    client = connect(config=cfg)
    for p in client.config.providers:  # ~100 ms an answer, so the run lasts a few seconds
        sim(client, p.model, base_ms=5000, ms_per_token=0)
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    yield client, tmp / "config.yaml"
    client.shutdown(stop_ray=False)


def backtest(config: Path, runs: Path) -> subprocess.Popen[str]:
    import ray

    argv = [sys.executable, "-m", "actors.cli", "--config", str(config), "backtest",
            "--address", ray.get_runtime_context().gcs_address, "--run-id", "k1",
            "--runs-dir", str(runs), "--data", "sample:sp500", "--start", "2008-06-01",
            "--limit", str(BARS), "--inflight", "2", "--timeout", "10", "--no-progress"]
    for p in POLICIES:
        argv += ["--policy", p]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def requests_paid(llm) -> int:
    llm.flush()
    costs = llm.costs("hour")
    return int(costs["requests"].sum()) if len(costs) else 0


def test_sigkilled_run_resumes_without_losing_duplicating_or_paying_twice(llm, tmp_path):
    client, config = llm
    runs = tmp_path / "runs"
    parts = runs / "k1" / "results"
    before = requests_paid(client)

    proc = backtest(config, runs)
    try:
        deadline = time.monotonic() + 120
        while not list(parts.glob("part-*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no results were written in time"
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    before_kill = {f.name: f.read_bytes() for f in parts.glob("part-*.parquet")}
    stored = pa.concat_tables([pq.read_table(parts / n) for n in sorted(before_kill)])
    stored = stored.to_pandas().set_index("key")
    assert 0 < len(stored) < TOTAL
    # What a kill in the middle of a write leaves behind: a part not yet renamed into place
    # and a journal line cut short. Neither may break the resume.
    (parts / f"part-{len(before_kill):05d}.parquet.tmp").write_bytes(b"PAR1 half a part")
    with open(runs / "k1" / "journal.log", "a") as fh:
        fh.write("D\tSPX|1d|2008-")

    proc = backtest(config, runs)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]

    files = sorted(parts.glob("part-*.parquet"))
    for name, data in before_kill.items():  # what was stored is kept as it was
        assert (parts / name).read_bytes() == data
    df = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    assert len(df) == TOTAL and df["key"].is_unique  # every bar once, in no two parts
    assert df["ok"].all() and df["request_id"].is_unique
    assert df["bar"].nunique() == BARS and set(df["policy"]) == set(POLICIES)
    again = df.set_index("key").loc[stored.index]
    assert (again["request_id"] == stored["request_id"]).all()
    assert (again["done_at"] == stored["done_at"]).all()  # not redone after the kill

    skipped, sent, recovered = map(int, re.search(
        r"\((\d+) already stored, (\d+) sent, (\d+) recovered", out).groups())
    assert skipped == len(stored) and skipped + sent + recovered == TOTAL
    # every (provider, bar) paid exactly once: policies that chose the same provider for a bar
    # share its answer through the response cache
    assert requests_paid(client) - before == len(df[["provider", "ts"]].drop_duplicates())
