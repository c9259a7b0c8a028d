"""Run a test file's `_job` in a subprocess of its own (a Ray cluster of its own, the test
session's shared Ray instance untouched) and read back its JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_job(script: str, tmp_path: Path, timeout: float = 600) -> dict:
    """`python script tmp_path`; the job prints its result as the last stdout line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, script, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
