"""What the Ray dashboard (on by default for a local Ray) costs, side by side in one run:
start-up time of `ray.init` and the resident memory of the instance's processes, without
and with it. Each arm starts its own local Ray in a subprocess.

    .venv/bin/python scripts/bench_dashboard.py [--settle 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ARM = textwrap.dedent("""
    import json, sys, time, psutil, ray
    dash, settle = sys.argv[1] == "on", float(sys.argv[2])
    t0 = time.monotonic()
    ctx = ray.init(address="local", num_cpus=1, include_dashboard=dash, log_to_driver=False)
    init_s = time.monotonic() - t0
    time.sleep(settle)  # let the dashboard's module processes start
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in procs if p.is_running())
    print(json.dumps({"init_s": init_s, "rss_mb": rss / 2**20, "processes": len(procs)}))
    ray.shutdown()
""")


def arm(which: str, settle: float) -> dict:
    p = subprocess.run([sys.executable, "-c", ARM, which, str(settle)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settle", type=float, default=15.0)
    args = ap.parse_args()
    off, on = arm("off", args.settle), arm("on", args.settle)
    print("| dashboard | ray.init s | processes | RSS MB |\n|---|---:|---:|---:|")
    for name, r in (("off", off), ("on", on)):
        print(f"| {name} | {r['init_s']:.1f} | {r['processes']} | {r['rss_mb']:.0f} |")
    print(f"with the dashboard: ×{on['init_s'] / off['init_s']:.2f} start-up time, "
          f"+{on['rss_mb'] - off['rss_mb']:.0f} MB resident (×{on['rss_mb'] / off['rss_mb']:.2f})")


if __name__ == "__main__":
    main()
