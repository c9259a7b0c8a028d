"""A second process attaches to the actors a first one started: `ray start --head` in a
subprocess, process A starts the system and routes a request, process B connects with
`ray://` and sees the same router, tracker and audit trail."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_config

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_py(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attach")
    gcs, client = free_port(), free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT),
           "RAY_AUTH_MODE": "disabled",  # a throwaway local cluster: no token needed
           # Calls between actors take the Ray-call channels, as across machines.
           "LLM_ROUTER_LOCAL_SOCKETS": "0"}
    env.pop("RAY_ADDRESS", None)
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(make_config(tmp)))
    start = [str(BIN / "ray"), "start", "--head", f"--port={gcs}",
             f"--ray-client-server-port={client}", "--num-cpus=2", "--include-dashboard=false",
             "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    # Its own process group, so teardown stops this cluster only (`ray stop` would stop
    # every Ray cluster of the machine, including a developer's or the session's own).
    proc = subprocess.Popen(start, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", gcs), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("ray start --head did not come up") from None
                time.sleep(0.5)
        yield {"gcs": f"127.0.0.1:{gcs}", "client": f"ray://127.0.0.1:{client}",
               "config": str(cfg), "env": env}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # What `ray stop` also does: forget this cluster as the machine's "current" one.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{gcs}"):
                current.unlink()


def test_second_process_attaches_over_ray_client(head):
    a = run_py(f"""
        import asyncio, json, ray
        from actors.api import connect
        llm = connect({head['gcs']!r}, {head['config']!r})
        r = llm.complete("hello from A", provider="llama")

        async def many():
            return await asyncio.gather(*(llm.acomplete(f"q{{i}}", provider="gemini")
                                          for i in range(12)))
        burst = asyncio.run(many())
        counts = ray.get(llm.handles.router.channel_counts.remote())
        llm.flush()  # records reach the tracker
        llm.costs("hour")
        print(json.dumps({{"request_id": r.request_id, "burst": len(burst),
                          "gemini": counts["gemini"]}}))
    """, head["env"])
    assert a["burst"] == 12
    ray_calls = a["gemini"]
    assert ray_calls["socket"] == 0 and ray_calls["calls"] == 12
    assert ray_calls["plain"] + ray_calls["submits"] >= 1
    b = run_py(f"""
        import json, time, ray
        from actors.api import connect
        for i in range(3):  # the client server's first start can be slow on a cold machine
            try:
                llm = connect({head['client']!r}, {head['config']!r})
                break
            except (ConnectionError, RuntimeError):
                if i == 2:
                    raise
                time.sleep(3)
        rows = llm.audit({a['request_id']!r})
        r = llm.complete("hello from B", provider="mixtral")
        names = sorted(x["name"] for x in ray.util.list_named_actors(all_namespaces=True))
        print(json.dumps({{"rows": len(rows), "provider": rows[-1]["provider"],
                          "b": r.provider, "names": names}}))
        llm.shutdown()
    """, head["env"])
    assert b["rows"] >= 2 and b["provider"] == "llama"  # A's request, seen from B
    assert b["b"] == "mixtral"
    assert b["names"].count("router") == 1 and b["names"].count("tracker") == 1
    assert "provider:claude" in b["names"]
