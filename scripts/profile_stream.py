"""Where a streamed request's first token spends its time, hop by hop (a profile, not a bench).

The product carries no tracing on its hot path, so the timestamps come from a patch applied
for the run and taken out after (`scripts/profile_stream.patch`: one `hop(label)` line per
hop, writing wall-clock time to $LLMR_HOPLOG; every process of the run is on this machine,
so their clocks agree):

    git apply scripts/profile_stream.patch
    PYTHONPATH=$PWD .venv/bin/python scripts/profile_stream.py [--requests 20] [--serve-mode haproxy]
    git checkout -- actors serve && rm actors/_hop.py

Same setup as `bench_router.py --http --stream` (simulated provider: 50 ms to the first of
20 chunks). Requests go one at a time, the arms interleaved: straight to the simulator, the
Python API (`llm.stream`), and the HTTP endpoint. Printed per arm: each hop's median time
from the client's send (`at`) and from the hop before (`+`); `c_first` is the first content
chunk at the client. Hops in order: gate (the app's ASGI middleware), chat (the FastAPI
route), stream_route, chan_open (caller side of a streaming channel call), r_entry /
r_started (router actor), r_provider (before opening the provider's stream), p_entry /
p_send (provider actor), sim_in / sim_frame (the simulator got the request / sent a frame),
p_ev (provider's first event), chan_val (first value off a channel), r_item, start (the
replica has StreamStart), asgi_send:* (the replica's first ASGI messages).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_router as br  # noqa: E402
from bench_stream import MODEL, STREAM_PROFILE  # noqa: E402

WARM = "warm"


_log: list[Any] = []


def stamp(label: str) -> None:
    """As the patch's `hop`: a line to a file kept open (~40 µs a stamp less than opening
    it each time, which inflated every hop of the first profiles)."""
    if not _log:
        _log.append(open(os.environ["LLMR_HOPLOG"], "a", buffering=1))
    _log[0].write(f"{time.time():.6f} {os.getpid()} {label}\n")


async def profile(args: argparse.Namespace) -> None:
    import ray

    from actors.api import connect
    from serve.spec import IngressSpec

    tmp = tempfile.mkdtemp(prefix="profile-stream-")
    cfg = br.bench_config(tmp)
    haproxy = None
    if args.serve_mode == "haproxy":
        haproxy = br.prepare(IngressSpec())
        os.environ.update(haproxy.env)
    os.environ.update(br.SERVE_MODES[args.serve_mode])
    cfg["simulator"]["latency_scale"] = 1.0
    llm = connect(config=cfg, num_cpus=2, include_dashboard=False)
    try:
        ray.get(llm.simulator.set_profile.remote(MODEL, STREAM_PROFILE))
        url = br.start_serve(cfg)
        token = Path(cfg["serve"]["auth"]["token_file"]).read_text()
        sim = llm.handles.simulator_url + "/v1/chat/completions"
        body = json.dumps({"model": MODEL, "max_tokens": 256, "stream": True,
                           "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": br.PROMPT}]}).encode()
        async with aiohttp.ClientSession() as session:

            async def sse(target: str, bearer: str, tag: str) -> None:
                hdrs = {"authorization": f"Bearer {bearer}", "content-type": "application/json"}
                stamp(f"==== {tag}")
                async with session.post(target, data=body, headers=hdrs) as r:
                    first = False
                    async for line in r.content:
                        if not first and line.startswith(b"data: ") and b'"content"' in line:
                            first = True
                            stamp("c_first")

            async def api(tag: str) -> None:
                stamp(f"==== {tag}")
                async with llm.stream(br.PROMPT, provider=MODEL, max_tokens=256) as s:
                    first = False
                    async for ev in s:
                        if not first and getattr(ev, "text", ""):
                            first = True
                            stamp("c_first")

            for _ in range(3):
                await sse(sim, "x", WARM)
                await sse(url, token, WARM)
                await api(WARM)
            for _ in range(args.requests):
                await sse(sim, "x", "direct")
                await api("api")
                await sse(url, token, "http")
    finally:
        from ray import serve

        serve.shutdown()
        llm.shutdown()
        if haproxy is not None:
            haproxy.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(path: str) -> None:
    """Median per hop: ms from the client's send, and from the hop before it."""
    runs: list[tuple[str, float, list[tuple[str, float]]]] = []
    for line in Path(path).read_text().splitlines():
        t, _, label = line.split(None, 2)
        if label.startswith("===="):
            runs.append((label[5:], float(t), []))
        elif runs:
            runs[-1][2].append((label, float(t)))
    by: dict[str, dict[str, list[tuple[float, float]]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for tag, t0, hops in runs:
        if tag == WARM:
            continue
        seen: set[str] = set()
        prev = t0
        for label, t in hops:  # the first time each hop is passed, up to the first token
            if label in seen:
                continue
            seen.add(label)
            by[tag][label].append(((t - t0) * 1000, (t - prev) * 1000))
            prev = t
            if label == "c_first":
                break
    for tag, hops in by.items():
        print(f"\n{tag}:\n| hop | at ms | + ms |\n|---|---:|---:|")
        for label, v in sorted(hops.items(), key=lambda kv: statistics.median(
                x for x, _ in kv[1])):
            print(f"| {label} | {statistics.median(x for x, _ in v):.2f} | "
                  f"{statistics.median(y for _, y in v):.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20, help="per arm, one at a time")
    ap.add_argument("--serve-mode", choices=sorted(br.SERVE_MODES), default="haproxy")
    args = ap.parse_args()
    if not (Path(__file__).resolve().parent.parent / "actors" / "_hop.py").exists():
        print("apply the hop patch first: git apply scripts/profile_stream.patch",
              file=sys.stderr)
        return 2
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # memory: no disk in a stamp
    fd, log = tempfile.mkstemp(prefix="hops-", suffix=".log", dir=shm)
    os.close(fd)
    os.environ["LLMR_HOPLOG"] = log  # before Ray starts: every worker inherits it
    asyncio.run(profile(args))
    report(log)
    print(f"\nraw timestamps: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
