"""The processes one `llm-router serve` started, remembered so its stop can end them all.

When `ray.shutdown()` does not finish in time (or the stop must give up on it), Ray's
processes are left running: the raylet and the GCS are this process's children, the
workers (the router's actors, Serve's controller, proxy and replicas) the raylet's. Once a
parent is gone its children hang under init, where nothing says whose they are. So the
tree of descendants is recorded while it is still a tree (before Ray stops), and what of it
is still alive at the end is ended directly: SIGTERM, a short grace, then SIGKILL. Only processes recorded as descendants of
this one are ever signalled — never another instance's, never by name.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import psutil


def _key(p: psutil.Process) -> tuple[int, float] | None:
    """(pid, start time): a pid reused by an unrelated process is not the one recorded."""
    try:
        return p.pid, p.create_time()
    except psutil.Error:
        return None


@dataclass
class ProcessTree:
    """Descendants of `root` (default: this process), accumulated over `record()` calls."""

    root: int = field(default_factory=os.getpid)
    _seen: dict[tuple[int, float], psutil.Process] = field(default_factory=dict)

    def record(self) -> int:
        """Add every current descendant; returns how many are known in all."""
        try:
            children = psutil.Process(self.root).children(recursive=True)
        except psutil.Error:
            children = []
        for p in children:
            k = _key(p)
            if k is not None:
                self._seen.setdefault(k, p)
        return len(self._seen)

    def alive(self) -> list[psutil.Process]:
        """The recorded processes still running (and still the same process)."""
        out = []
        for k, p in self._seen.items():
            try:
                if _key(p) == k and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                continue
        return out

    def end(self, grace_s: float = 1.0) -> tuple[int, int]:
        """SIGTERM what is left, SIGKILL whatever is still there after `grace_s`; wait for
        it to be gone (our own children are reaped). Returns (how many were still running,
        how many of them needed the SIGKILL)."""
        running = self.alive()
        for p in running:
            _signal(p, signal.SIGTERM)
        _, left = psutil.wait_procs(running, timeout=grace_s)
        for p in left:
            _signal(p, signal.SIGKILL)
        psutil.wait_procs(left, timeout=max(grace_s, 1.0))
        return len(running), len(left)


def _signal(p: psutil.Process, sig: signal.Signals) -> None:
    try:
        p.send_signal(sig)  # psutil checks the pid still names the same process first
    except psutil.Error:
        pass
