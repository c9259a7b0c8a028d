"""Chaos and load: drive HTTP traffic and a backtest at once while injecting faults, then
reconcile every request against the audit trail.

`scripts/chaos.py` runs the full schedule; `tests/test_chaos.py` a lean one. Both use
`run_chaos()`, which needs Ray initialized (it starts the router's actors and the Serve app
itself, and stops them at the end). Traffic stays on loopback.

Invariants checked (any failure → `ChaosReport.ok` is False; tools/reconcile.py):
- lost = 0: every HTTP request got a terminal answer, and every request that reached the
  router has exactly one terminal audit row; every stored backtest bar too.
- duplicated audit rows = 0 (per request, and per (request, attempt, provider)).
- spend within the budget that ran out mid-run.
- 429s caused by the router itself = 0 (the simulator enforces the configured rpm/tpm
  and counts every request that exceeded them).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import ray
import yaml

from actors.config import DEFAULT_CONFIG, parse_config
from tools.chaos_steps import committed_usd, router_answers, run_out_budget
from tools.reconcile import ChaosReport, reconcile_run


def chaos_config(workdir: Path, latency_scale: float = 0.05,
                 db_url: str | None = None) -> dict[str, Any]:
    """The shipped providers, simulated, with short breaker/retry timings and a private DB
    (SQLite in `workdir`, or the PostgreSQL database `db_url` names)."""
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    data["simulator"] = {"mode": "always", "latency_scale": latency_scale}
    data["tracker"] = {"db_path": str(workdir / "audit.sqlite3")}
    if db_url is not None:
        data["tracker"]["db_url"] = db_url
    data["serve"] = {"auth": {"token_file": str(_token_file(workdir))}}
    for p in data["providers"]:
        p.update(timeout_s=2.0, rpm=min(p["rpm"], 1200))
        p["breaker"].update(open_s=2.0, max_open_s=6.0, consecutive_failures=4, min_requests=8,
                            window_s=10.0)
        p["retry"].update(max_attempts=2, base_s=0.05, max_s=0.5)
    return data


@dataclass
class Step:
    """One scheduled fault: `start(ctx)` at `at` s, `end(ctx)` `hold` s later (if any)."""

    at: float
    name: str
    start: Callable[[Chaos], Awaitable[Any]]
    hold: float | None = None
    end: Callable[[Chaos], Awaitable[Any]] | None = None


def _token_file(workdir: Path) -> Path:
    """The HTTP client token of the run, in a 0600 file the endpoint reads (made once)."""
    path = workdir / "http-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chaos:
    """One bounded run. Construct, then `await run()`."""

    def __init__(self, workdir: Path, *, duration_s: float = 150.0, http_concurrency: int = 6,
                 bars: int = 600, latency_scale: float = 0.05, down_s: float = 60.0,
                 log: Callable[[str], None] = print, db_url: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.duration = duration_s
        self.http_concurrency = http_concurrency
        self.bars = bars
        self.down_s = down_s
        self.log = log
        self.config = parse_config(chaos_config(self.workdir, latency_scale, db_url))
        self.t0 = 0.0
        self.events: list[tuple[float, str]] = []
        self.http_outcomes: list[tuple[str, str]] = []  # (request_id, class)
        self.recovery: dict[str, float | None] = {}
        self.budget_usd: float | None = None
        self.llm: Any = None
        self.url = ""
        token = _token_file(self.workdir).read_text().strip()
        self.auth = {"authorization": f"Bearer {token}"}
        self._stop = asyncio.Event()
        self._router_killed = False

    # -- schedule --------------------------------------------------------------------------

    def schedule(self) -> list[Step]:
        d = self.duration
        return [
            Step(0.08 * d, "claude: bursts of 429 with retry-after",
                 lambda c: c.sim("claude", rate_limit=0.6, retry_after_s=1.0), 0.08 * d,
                 lambda c: c.sim_reset("claude")),
            Step(0.14 * d, "gemini: 500s", lambda c: c.sim("gemini", server_error=0.5), 0.08 * d,
                 lambda c: c.sim_reset("gemini")),
            Step(0.20 * d, "claude: 529 overloaded", lambda c: c.sim("claude", overloaded=0.5),
                 0.06 * d, lambda c: c.sim_reset("claude")),
            Step(0.24 * d, "mixtral: timeouts", lambda c: c.sim("mixtral", timeout=0.3, hang_s=3.0),
                 0.08 * d, lambda c: c.sim_reset("mixtral")),
            Step(0.28 * d, "llama: malformed bodies", lambda c: c.sim("llama", malformed=0.4),
                 0.08 * d, lambda c: c.sim_reset("llama")),
            Step(0.32 * d, f"gpt-4-turbo: dead for {self.down_s:.0f} s",
                 lambda c: c.sim("gpt-4-turbo", down=True), self.down_s,
                 lambda c: c.sim_reset("gpt-4-turbo")),
            Step(0.40 * d, "ray.kill provider:llama", lambda c: c.kill_provider("llama")),
            Step(0.50 * d, "ray.kill tracker", lambda c: c.kill_tracker()),
            Step(0.60 * d, "ray.kill router", lambda c: c.kill_router()),
            Step(0.70 * d, "ray.kill a Serve replica", lambda c: c.kill_replica()),
            Step(0.80 * d, "budget runs out", lambda c: c.exhaust_budget()),
        ]

    def note(self, what: str) -> None:
        t = time.monotonic() - self.t0
        self.events.append((round(t, 1), what))
        self.log(f"[{t:6.1f}s] {what}")

    # -- fault actions ---------------------------------------------------------------------

    async def sim(self, provider: str, **fields: Any) -> None:
        await self.llm.simulator.set_profile.remote(self.config.provider(provider).model, fields)

    async def sim_reset(self, provider: str) -> None:
        """Back to the startup profile, with the provider's account limits in force again."""
        spec = self.config.provider(provider)
        await self.llm.simulator.reset_profile.remote(spec.model)
        await self.sim(provider, rpm=spec.rpm, tpm=spec.tpm)

    async def _recover(self, what: str, probe: Callable[[], Awaitable[Any]], since: float,
                       limit: float = 90.0) -> None:
        while time.monotonic() - since < limit:
            try:
                await asyncio.wait_for(probe(), 10)
                self.recovery[what] = round(time.monotonic() - since, 2)
                return
            except Exception:
                await asyncio.sleep(0.2)
        self.recovery[what] = None

    async def kill_provider(self, name: str) -> None:
        since = time.monotonic()
        ray.kill(self.llm.provider(name), no_restart=False)
        asyncio.ensure_future(self._recover(
            f"provider:{name}", lambda: self.llm.provider(name).ready.remote(), since))

    async def _new_pid(self, handle: Any, old: int) -> None:
        pid = await handle.__ray_call__.remote(lambda self: __import__("os").getpid())
        if pid == old:
            raise RuntimeError("not restarted yet")

    async def kill_tracker(self) -> None:
        h = self.llm.handles.tracker
        old = await h.__ray_call__.remote(lambda self: __import__("os").getpid())
        since = time.monotonic()
        ray.kill(h, no_restart=False)

        async def probe() -> None:
            await self._new_pid(h, old)
            await h.reconcile.remote()

        asyncio.ensure_future(self._recover("tracker", probe, since))

    async def kill_router(self) -> None:
        since = time.monotonic()
        ray.kill(self.llm.handles.router, no_restart=False)
        self._router_killed = True
        asyncio.ensure_future(self._recover("router", lambda: router_answers(self.llm), since))

    async def kill_replica(self) -> None:
        replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                    if a["namespace"] == "serve" and "RouterIngress" in a["name"]
                    and "REPLICA" in a["name"].upper()]
        if not replicas:
            self.note("no Serve replica found to kill")
            return
        since = time.monotonic()
        ray.kill(ray.get_actor(replicas[0]["name"], namespace="serve"), no_restart=True)
        await asyncio.sleep(0.5)  # let the controller notice before probing

        async def probe() -> None:
            from ray import serve

            async with aiohttp.ClientSession() as s, s.get(self.url + "/healthz",
                                                           headers=self.auth) as r:
                if r.status != 200:
                    raise RuntimeError(r.status)
            app = next(iter(serve.status().applications.values()))
            dep = next(iter(app.deployments.values()))
            if dep.replica_states.get("RUNNING", 0) < 2:
                raise RuntimeError("replacement replica not running yet")

        asyncio.ensure_future(self._recover("serve replica", probe, since))

    async def exhaust_budget(self) -> None:
        # After a router kill, the budget runs out once the router routes again: what waited
        # for its restart (bars in flight at the kill) is in and reserved first, not refused.
        deadline = time.monotonic() + 60
        while self._router_killed and "router" not in self.recovery and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 60  # then as long again for an answer to budgets()
        while True:
            try:
                status = self.llm.budgets()
                break
            except ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        spent, committed = committed_usd(status)
        self.budget_usd = await asyncio.to_thread(run_out_budget, self.llm, committed)
        self.note(f"global hourly budget set to ${self.budget_usd:.4f} (spent so far "
                  f"${spent:.4f})")

    # -- load ------------------------------------------------------------------------------

    async def _http_worker(self, session: aiohttp.ClientSession, wid: int) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            rid = f"chaos-http-{wid}-{n}"
            body = {"model": "auto", "max_tokens": 200, "request_id": rid, "timeout": 20,
                    "messages": [{"role": "user", "content": f"Regime: bull. Bar {n}. Signal?"}]}
            try:
                async with session.post(self.url + "/v1/chat/completions", json=body,
                                        headers=self.auth,
                                        timeout=aiohttp.ClientTimeout(total=30)) as r:
                    raw = await r.read()
                    try:
                        data = json.loads(raw)
                    except ValueError:
                        data = None
                    if r.status == 200:
                        cls = "200"
                    elif isinstance(data, dict):
                        cls = f"{r.status} {(data.get('error') or {}).get('type', '?')}"
                    else:  # not from our app (e.g. Serve's proxy while a replica restarts)
                        cls = f"{r.status} non-JSON: {raw[:60].decode(errors='replace')}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                cls = f"connection {type(exc).__name__}"
            self.http_outcomes.append((rid, cls))
            await asyncio.sleep(0.02)

    async def _backtest(self) -> dict[str, Any]:
        from actors.backtest.runner import arun_backtest
        from actors.backtest.spec import BacktestSpec

        spec = BacktestSpec(run_id="chaos", limit=self.bars, policies=["cost-aware"],
                            runs_dir=self.workdir / "runs", timeout=60, max_tokens=256,
                            start="2010-01-01")
        out = await arun_backtest(self.llm, spec, progress=False)
        return {"outcome": out}

    # -- the run ---------------------------------------------------------------------------

    async def start(self) -> None:
        from actors.api import connect
        from serve.run import deploy, load_serve_config

        self.llm = connect(config=self.config)
        for spec in self.config.providers:  # the simulator enforces the configured limits
            await self.sim(spec.name, rpm=spec.rpm, tpm=spec.tpm)
        await self.llm.simulator.reset_stats.remote()
        schema = load_serve_config()
        dep = schema.applications[0].deployments[0]
        dep.ray_actor_options.num_cpus = 0
        if dep.autoscaling_config:  # two replicas, so killing one leaves one
            auto = dict(dep.autoscaling_config)
            auto.update(min_replicas=2, initial_replicas=2)
            dep.autoscaling_config = auto
        self.url = deploy(self.config, schema, port=_free_port())

    async def stop(self) -> None:
        from ray import serve

        try:
            serve.shutdown()
        finally:
            self.llm.shutdown(stop_ray=False)

    async def run(self) -> ChaosReport:
        await self.start()
        try:
            return await self._run()
        finally:
            await self.stop()

    async def _run(self) -> ChaosReport:
        self.t0 = time.monotonic()
        self.note(f"load: {self.http_concurrency} HTTP workers + a {self.bars}-bar backtest")
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        workers = [asyncio.ensure_future(self._http_worker(session, i))
                   for i in range(self.http_concurrency)]
        backtest = asyncio.ensure_future(self._backtest())
        pending_ends: list[tuple[float, Step]] = []
        for step in self.schedule():
            await self._sleep_until(step.at, pending_ends)
            self.note(step.name)
            await step.start(self)
            if step.end is not None and step.hold is not None:
                pending_ends.append((step.at + step.hold, step))
        # the load runs on for a tenth of the run after the last step took effect, however
        # late a loaded machine made it (e.g. the budget set only once the router was back)
        tail = time.monotonic() - self.t0 + 0.1 * self.duration
        await self._sleep_until(max(self.duration, tail), pending_ends)
        for _, step in sorted(pending_ends, key=lambda t: t[0]):
            self.note(f"end: {step.name}")
            await step.end(self)  # type: ignore[misc]
        self._stop.set()
        await asyncio.gather(*workers)
        await session.close()
        self.note("HTTP load stopped; waiting for the backtest")
        try:
            bt = await asyncio.wait_for(backtest, max(60.0, self.duration))
        except Exception as exc:  # reported, not hidden
            bt = {"error": f"{type(exc).__name__}: {exc}"}
        await asyncio.sleep(1.0)
        for _ in range(100):  # let kills' recovery probes finish
            if all(k in self.recovery for k in ("provider:llama", "tracker", "router",
                                                "serve replica")):
                break
            await asyncio.sleep(0.5)
        return await reconcile_run(self, bt)

    async def _sleep_until(self, at: float, pending_ends: list[tuple[float, Step]]) -> None:
        while True:
            now = time.monotonic() - self.t0
            due = sorted((e for e in pending_ends if e[0] <= now), key=lambda e: e[0])
            for e in due:
                pending_ends.remove(e)
                self.note(f"end: {e[1].name}")
                await e[1].end(self)  # type: ignore[misc]
            if now >= at:
                return
            nxt = min([at, *(e[0] for e in pending_ends)])
            await asyncio.sleep(max(0.05, min(0.5, nxt - now)))


async def run_chaos(workdir: Path, **kw: Any) -> ChaosReport:
    return await Chaos(workdir, **kw).run()
