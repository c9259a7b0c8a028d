"""serve/process_tree.py with real processes: what `llm-router serve` started is ended even
after its parent died and it was reparented (as Ray's workers are once the raylet stops),
a process that ignores SIGTERM is killed, and nothing outside the recorded tree is touched."""

from __future__ import annotations

import subprocess
import sys

import psutil

from serve.process_tree import ProcessTree
from tests.waiting import wait_until

# A child that starts a grandchild ignoring SIGTERM, prints its pid, and waits for stdin to
# close before exiting (so the test records the tree while it is still a tree).
PARENT = r"""
import subprocess, sys
g = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
print(g.pid, flush=True)
sys.stdin.read()
"""


def _spawn() -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def test_an_orphaned_descendant_that_ignores_sigterm_is_killed_and_others_are_left():
    parent, grandchild = _spawn()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        tree = ProcessTree(root=parent.pid)
        wait_until(lambda: tree.record() >= 1, 10, what="the grandchild recorded")
        assert grandchild in {p.pid for p in tree.alive()}
        parent.stdin.close()  # the parent exits: the grandchild is reparented
        parent.wait(timeout=30)
        assert psutil.Process(grandchild).ppid() != parent.pid
        assert tree.record() >= 1  # recording again after the parent died loses nothing

        assert tree.end(grace_s=0.5) == (1, 1)  # SIGTERM ignored: it took a SIGKILL
        assert not psutil.pid_exists(grandchild) or \
            psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        assert tree.alive() == []
        assert bystander.poll() is None  # not a descendant of the root: untouched
        assert tree.end() == (0, 0)  # ending twice is harmless
    finally:
        bystander.kill()
        bystander.wait()
        for pid in (grandchild,):
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_a_root_that_is_gone_records_nothing():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    tree = ProcessTree(root=p.pid)
    assert tree.record() == 0 and tree.alive() == [] and tree.end() == (0, 0)
