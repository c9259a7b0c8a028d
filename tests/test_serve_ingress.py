"""The crash-safe HAProxy ingress without Ray: the launcher pins the side listeners to the
configured host and dies with its parent; `prepare` gives each instance its own directory
and ports; a start sweeps what a dead instance left."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from serve.haproxy_launch import pin_listeners
from serve.ingress import PREFIX, prepare, sweep
from serve.spec import IngressSpec
from tests.waiting import wait_until

#: The listener lines of Ray's HAProxy template (ray/serve/_private/haproxy_templates.py).
RAY_CONFIG = """global
    stats socket /x/admin.sock mode 666 level admin expose-fd listeners
frontend prometheus
    bind :9101
    mode http
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:8404
  stats enable
"""


@pytest.fixture
def base():
    """A short directory: HAProxy's Unix socket paths under it must stay under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="llmr-t-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_side_listeners_are_pinned_and_the_frontend_left_alone():
    out = pin_listeners(RAY_CONFIG, "127.0.0.1", {"stats": 8404, "metrics": 9101})
    assert "    bind 127.0.0.1:9101\n" in out and "  bind 127.0.0.1:8404\n" in out
    assert "bind 127.0.0.1:8000" in out and "*:" not in out and "bind :" not in out
    assert pin_listeners(out, "127.0.0.1", {"stats": 8404, "metrics": 9101}) == out
    with pytest.raises(SystemExit, match="template changed"):
        pin_listeners(RAY_CONFIG, "127.0.0.1", {"stats": 8405, "metrics": 9101})
    assert "bind :90\n" in pin_listeners("bind :90\nbind :9090\n", "::1", {"m": 9090})


def test_prepare_gives_each_instance_its_own_private_dir_and_ports(base):
    spec = IngressSpec()
    a, b = prepare(spec, base=base), prepare(spec, base=base)
    try:
        assert a.directory != b.directory and a.directory.name.startswith(PREFIX)
        assert stat.S_IMODE(a.directory.stat().st_mode) == 0o700
        launcher = Path(a.env["RAY_SERVE_HAPROXY_BINARY_PATH"])
        assert launcher.parent == a.directory and os.access(launcher, os.X_OK)
        for key in ("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "RAY_SERVE_HAPROXY_SOCKET_PATH",
                    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
            assert Path(a.env[key]).parent == a.directory, key
        ports = {k: v for k, v in a.env.items() if k.endswith("_PORT")}
        assert len(ports) == 4  # stats, metrics, Serve's fallback proxy (HTTP, gRPC)
        assert "8404" not in ports.values() and "9101" not in ports.values()
        assert "8500" not in ports.values()
        assert set(ports.values()).isdisjoint(
            {v for k, v in b.env.items() if k.endswith("_PORT")})
        assert a.host == "127.0.0.1"
    finally:
        a.close()
        b.close()
    assert not a.directory.exists()


def _fake_haproxy(tmp_path: Path) -> Path:
    """A program that looks like HAProxy to /proc (its name), takes `-f FILE` as HAProxy
    does, and runs until killed: `tail -f FILE` under the name haproxy."""
    fake = tmp_path / "haproxy"
    shutil.copy(shutil.which("tail"), fake)
    return fake


def test_launcher_rewrites_the_config_and_haproxy_dies_with_its_parent(tmp_path, base,
                                                                        monkeypatch):
    fake = _fake_haproxy(tmp_path)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(fake))  # "the user's binary"
    ingress = prepare(IngressSpec(), base=base)
    try:
        cfg = ingress.directory / "haproxy.cfg"
        stats = ingress.env["RAY_SERVE_HAPROXY_STATS_PORT"]
        metrics = ingress.env["RAY_SERVE_HAPROXY_METRICS_PORT"]
        cfg.write_text(RAY_CONFIG.replace("8404", stats).replace("9101", metrics))
        launcher = ingress.env["RAY_SERVE_HAPROXY_BINARY_PATH"]
        # the HAProxyManager actor's part: a parent that starts the binary, then is killed
        parent = subprocess.Popen(
            [sys.executable, "-c", "import subprocess, time\n"
             f"subprocess.Popen([{launcher!r}, '-f', {str(cfg)!r}], "
             "stdout=subprocess.DEVNULL)\n"
             "time.sleep(300)"], start_new_session=True)
        try:
            def child() -> psutil.Process | None:
                kids = psutil.Process(parent.pid).children(recursive=True)
                return next((k for k in kids if k.name() == "haproxy"), None)

            wait_until(child, 30)  # the launched fake HAProxy
            pid = child().pid
            text = cfg.read_text()
            assert f"bind 127.0.0.1:{stats}" in text and f"bind 127.0.0.1:{metrics}" in text
            os.kill(parent.pid, signal.SIGKILL)  # the actor dies without cleaning up
            parent.wait(timeout=10)
            wait_until(lambda: not psutil.pid_exists(pid) or  # HAProxy gone with its parent
                       psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)
        finally:
            try:
                os.killpg(parent.pid, signal.SIGKILL)
            except OSError:
                pass
    finally:
        ingress.close()


def test_sweep_removes_a_dead_instance_and_its_haproxy_and_keeps_live_ones(tmp_path, base):
    live = prepare(IngressSpec(), base=base)
    dead = base / f"{PREFIX}dead"
    dead.mkdir(mode=0o700)
    (dead / "owner").write_text("999999999 1")  # a pid that does not exist
    (dead / "haproxy.cfg").write_text(RAY_CONFIG)
    fake = _fake_haproxy(tmp_path)
    orphan = subprocess.Popen([str(fake), "-f", str(dead / "haproxy.cfg")],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: psutil.Process(orphan.pid).name() == "haproxy", 10)  # fake started
        assert orphan.poll() is None
        assert sweep(base) == [dead]
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert not dead.exists() and live.directory.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        live.close()


def test_picked_ports_avoid_the_ephemeral_range_and_ports_in_use(monkeypatch):
    """HAProxy binds its side ports seconds after they are picked: a kernel-picked port
    (ephemeral range) was taken by an outgoing connection meanwhile under load."""
    import socket

    from serve import ingress

    start = ingress._ephemeral_start()
    for _ in range(20):
        assert ingress.PICK_FROM <= ingress.free_port("127.0.0.1") < start
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken, taken + 1 if taken + 1 < 65536 else taken - 1])
        monkeypatch.setattr(ingress.random, "randrange", lambda a, b: next(picks))
        monkeypatch.setattr(ingress, "_ephemeral_start", lambda: 65535)
        assert ingress.free_port("127.0.0.1", tries=2) != taken
