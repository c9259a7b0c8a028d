"""How `llm-router serve` stops on Ctrl-C / SIGTERM: everything it started is gone within
STOP_BUDGET_S, however loaded the machine.

The graceful part, each step given what is left of the budget: Serve's own shutdown (requests
in flight get `serve.stop_grace_s` to finish), then the actors (records flushed, leases
released, the simulator stopped) and Ray, in a thread the stop waits for only until its
deadline. Then whatever of this instance's process tree is still running is ended directly
(serve/process_tree.py). Before, a watchdog simply exited the process when a step overran —
and left every Ray process behind (CI under load: ~33 after 15 s). Steps do overrun: one
Ray process that does not answer holds `ray.shutdown()` up (a stalled dashboard agent:
~12 s), and on a loaded machine Serve's shutdown, the flush and the lease release each take
seconds. Only this process's own descendants are ever signalled, never another instance's.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from ray import serve

from serve.process_tree import ProcessTree

#: Ctrl-C / SIGTERM to every process gone, worst case (`serve.stop_grace_s` ≤ 10 s of it).
STOP_BUDGET_S = 14.0
#: Kept at the end for ending what is left (SIGTERM, a second, SIGKILL, waiting for it),
#: and for the exit itself on a loaded machine.
REAP_S = 4.0
#: The least the actors' and Ray's own shutdown gets, even after a long HTTP drain.
ACTORS_MIN_S = 2.0
#: Grace between SIGTERM and SIGKILL for the processes left at the end.
TERM_GRACE_S = 1.0


def stop(llm: Any, grace_s: float, cleanup: Callable[[], None] | None = None) -> None:
    """Stop this instance (see the module docstring). Returns once everything is down; if
    the graceful part did not finish in time, its processes are ended and the process
    exits from here, after `cleanup` (e.g. the HAProxy directory), instead of returning."""
    t0 = time.monotonic()
    deadline = t0 + STOP_BUDGET_S - REAP_S
    tree = ProcessTree()
    tree.record()
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup
        signal.signal(sig, signal.SIG_IGN)
    watchdog = threading.Timer(STOP_BUDGET_S - REAP_S + 0.5, _overran, args=(tree, t0, cleanup))
    watchdog.daemon = True
    watchdog.start()

    http_s = max(0.0, min(grace_s, deadline - ACTORS_MIN_S - time.monotonic()))
    try:
        asyncio.run(asyncio.wait_for(serve.shutdown_async(), http_s))
    except TimeoutError:
        print(f"==> requests still in flight after {http_s:g} s: stopping anyway", flush=True)
    except Exception as exc:  # Serve half-gone already: Ray's shutdown still cleans up
        print(f"==> Serve shutdown: {type(exc).__name__}: {exc}", flush=True)
    known = tree.record()  # while Ray's workers are still the raylet's children
    print(f"    HTTP stopped ({time.monotonic() - t0:.1f} s); stopping the actors and Ray "
          f"({known} processes)", flush=True)

    # unflushed records stay in the router's journal for the next start
    actors = threading.Thread(target=llm.shutdown, kwargs={"flush_timeout": 2.0}, daemon=True)
    actors.start()
    actors.join(max(0.0, deadline - time.monotonic()))
    finished = not actors.is_alive()
    if not finished:
        print(f"==> the actors and Ray did not stop within {time.monotonic() - t0:.1f} s: "
              "ending their processes", flush=True)
    watchdog.cancel()
    actors_done = time.monotonic()
    running, killed = tree.end(TERM_GRACE_S)
    if running:
        print(f"    {running} processes Ray left running were ended ({killed} needed SIGKILL)"
              f" after {actors_done - t0:.1f} s", flush=True)
    gc.freeze()  # the process ends next: spare it a last collection over the heap (seconds)
    print(f"==> stopped ({time.monotonic() - t0:.1f} s)", flush=True)
    if not finished:  # a thread still inside Ray's shutdown must not hold up the exit
        _exit(0, cleanup)


def _overran(tree: ProcessTree, t0: float, cleanup: Callable[[], None] | None) -> None:
    """The main thread is stuck (Serve's shutdown ignoring its timeout): end it all here."""
    print(f"==> stop took more than {STOP_BUDGET_S - REAP_S:g} s: ending every process now",
          flush=True)
    tree.record()
    tree.end(TERM_GRACE_S)
    print(f"==> stopped ({time.monotonic() - t0:.1f} s)", flush=True)
    _exit(0 if not tree.alive() else 1, cleanup)


def _exit(code: int, cleanup: Callable[[], None] | None) -> None:
    if cleanup is not None:
        cleanup()
    os._exit(code)
