"""`llm-router serve` stops on Ctrl-C even when started with SIGINT ignored (no Ray).

A non-interactive shell starts background commands with SIGINT ignored, and Python then
installs no KeyboardInterrupt: the server ignored Ctrl-C / `kill -INT` and left every Ray
process running (every full CI run launched with `&` failed test_serve_process that way).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]

WAITER = textwrap.dedent("""
    import signal, sys, time
    from serve.run import _Stop, _stop_on_signals
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # as inherited
    with _stop_on_signals():
        try:
            print("waiting", flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print("stopped by SIGINT", flush=True)
        except _Stop:
            print("stopped by SIGTERM", flush=True)
    print("restored", signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True)
""")


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER], cwd=ROOT, stdout=out.open("w"),
        stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_until(lambda: "waiting" in out.read_text(), 30, what="the waiter started")
    return proc, out


def test_sigint_stops_the_server_even_when_inherited_as_ignored(tmp_path):
    proc, out = _start(tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, out.read_text()
    assert "stopped by SIGINT" in out.read_text()
    assert "restored True" in out.read_text()  # the caller's disposition comes back


def test_sigterm_stops_it_too(tmp_path):
    proc, out = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, out.read_text()
    assert "stopped by SIGTERM" in out.read_text()
