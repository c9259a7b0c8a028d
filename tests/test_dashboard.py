"""`llm-router serve` starts the Ray dashboard, prints its URL, and that URL answers and
lists the router's named actors — checked from outside, over HTTP, with the token Ray
keeps, as a user would. `llm-router status` at the printed address reports them healthy.

The real thing in a subprocess (its own local Ray); the test session's cluster stays
dashboard-less.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml

from actors.caller.dashboard import auth_headers, list_actors, named_alive
from tests.conftest import make_config
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("claude", "llama", "mixtral")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    cfg = make_config(tmp)
    for p in cfg["providers"]:  # fewer processes on a shared 2-core machine
        p["enabled"] = p["name"] in PROVIDERS
    cfg["serve"] = {"auth": {"anonymous": True}}  # loopback only: the test needs no token
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "--config", str(path), "serve", "--ingress", "proxy",
         "--port", str(free_port())], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                     daemon=True).start()
    try:
        wait_until(lambda: any("llm-router status --address" in s for s in lines)
                   or proc.poll() is not None, 400, every=0.5, what="serve start-up")
        assert proc.poll() is None, "".join(lines)[-3000:]
        yield lines
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: serve stops its own Ray
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _line(lines: list[str], pattern: str) -> re.Match:
    for s in lines:
        if m := re.search(pattern, s):
            return m
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(lines)}")


def test_serve_prints_a_dashboard_url_that_answers_and_lists_the_actors(served):
    m = _line(served, r"dashboard: (http://\S+) — (.*)")
    url, said = m.group(1), m.group(2)
    assert said.startswith(f"answers; lists router, tracker and {len(PROVIDERS)} provider"), said
    with httpx.Client(timeout=10) as client:
        r = list_actors(url, client)
        assert r.status_code == 200, r.text[:300]
        names = named_alive(r.json())
        if auth_headers():  # token authentication on (Ray's default for a local instance)
            assert client.get(f"{url}/api/v0/actors").status_code == 401
    assert {"router", "tracker", *(f"provider:{p}" for p in PROVIDERS)} <= set(names)
    assert _line(served, r"Prometheus: (http://\S+/metrics)")
    if auth_headers():
        assert _line(served, r"token for its REST API .*RAY_AUTH_MODE=token, token in \S+")


def test_status_at_the_printed_address_reports_every_actor_healthy(served):
    m = _line(served, r"health from the CLI: (RAY_AUTH_MODE=token )?llm-router status "
                      r"--address (\S+)")
    address = m.group(2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    if m.group(1):  # the command as printed, variable included
        env["RAY_AUTH_MODE"] = "token"
    p = subprocess.run([sys.executable, "-m", "actors.cli", "status", "--address", address,
                        "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    report = json.loads(p.stdout)
    names = {a["name"] for a in report["actors"]}
    assert {"router", "tracker", *(f"provider:{p}" for p in PROVIDERS)} <= names
    assert all(a["on_head"] for a in report["actors"] if a["name"] in ("router", "tracker"))
    assert report["dashboard"] and {p["name"] for p in report["providers"]} == set(PROVIDERS)
    text = subprocess.run([sys.executable, "-m", "actors.cli", "status", "--address", address],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert text.returncode == 0 and "healthy" in text.stdout.splitlines()[0], text.stdout
    assert re.search(r"^provider:llama\s+ALIVE\s+head", text.stdout, re.M), text.stdout
