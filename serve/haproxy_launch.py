"""Started by Ray Serve in place of the haproxy binary (`RAY_SERVE_HAPROXY_BINARY_PATH` points
at a wrapper serve/ingress.py writes); makes two changes, then execs the real binary with
Ray's own arguments, keeping the pid Ray waits on:

- HAProxy dies with the process that started it (Ray's HAProxyManager actor). Ray starts it
  as a plain child, so when `llm-router serve` was SIGKILLed the HAProxy lived on, holding
  the serving port and blocking every later start (`PR_SET_PDEATHSIG`, Linux).
- the stats and Prometheus listeners, which Ray's template binds on every interface at fixed
  ports, bind the configured host and per-instance ports instead. The config file is
  rewritten in place under the lock Ray writes it with, so Ray's own reload logic (it finds
  its processes by the config path in their command line) still works.

Standard library only, run with `python -I -S`: it sits on HAProxy's start-up path.

    haproxy_launch.py REAL_BINARY HOST STATS_PORT METRICS_PORT -- HAPROXY_ARGS...
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process (and the HAProxy it becomes) when its parent dies."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the setting took effect
        raise SystemExit("haproxy_launch: parent exited before HAProxy started")


def pin_listeners(text: str, host: str, ports: dict[str, int]) -> str:
    """`bind` lines of the given ports, moved to `host`; fails if a port has none."""
    for what, port in ports.items():
        pattern = re.compile(rf"^(\s*bind\s+)\S*?:{port}(?=\s|$)", re.MULTILINE)
        text, n = pattern.subn(rf"\g<1>{host}:{port}", text)
        if n == 0:
            raise SystemExit(f"haproxy_launch: no `bind` line for the {what} port {port} in "
                             "the HAProxy config; Ray's template changed: update "
                             "serve/haproxy_launch.py")
    return text


def rewrite(path: str, host: str, ports: dict[str, int]) -> None:
    with open(path + ".lock", "a") as lock:  # the lock Ray holds while it writes the file
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        with open(path) as f:
            text = f.read()
        new = pin_listeners(text, host, ports)
        if new != text:
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(new)
            os.replace(tmp, path)


def main(argv: list[str]) -> None:
    real, host, stats, metrics, sep, *args = argv
    if sep != "--":
        raise SystemExit("usage: haproxy_launch.py REAL HOST STATS_PORT METRICS_PORT -- ARGS")
    die_with_parent()
    if "-f" in args:
        rewrite(args[args.index("-f") + 1], host, {"stats": int(stats),
                                                   "metrics": int(metrics)})
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
