"""Running the simulator: in this process (``serve``) or as a managed subprocess.

The subprocess form is what tests, the demo and benchmarks use: the simulator then has its
own core and event loop, so its numbers are not disturbed by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from actors.simulator.profiles import Profile
from actors.simulator.stats import Stats

URL_PREFIX = "SIMULATOR_URL="
_ROOT = Path(__file__).resolve().parents[2]


def simulator_base_url(api: str, sim_url: str) -> str:
    """The base URL a real client of wire format `api` should use to reach the simulator."""
    sim_url = sim_url.rstrip("/")
    if api == "anthropic":
        return sim_url
    if api == "openai":
        return sim_url + "/v1"
    if api == "gemini":
        return sim_url + "/v1beta"
    raise ValueError(f"unknown wire api {api!r}; expected anthropic, openai or gemini")


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    latency_scale: float = 1.0,
    seed: int | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    exit_on_stdin_eof: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT; print ``SIMULATOR_URL=...`` once accepting connections.

    With `exit_on_stdin_eof`, also stop when stdin closes: a parent that dies without
    cleaning up (even SIGKILL) closes the pipe, so no orphan simulator outlives it.
    """
    import uvicorn

    from actors.simulator.app import SimulatedCut, SimulatorApp
    from actors.simulator.engine import Simulator

    class QuietCuts(logging.Filter):
        """A `cut` fault is an exception on purpose: not an error worth a traceback."""

        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.exc_info and isinstance(record.exc_info[1], SimulatedCut))

    logging.getLogger("uvicorn.error").addFilter(QuietCuts())

    sim = Simulator(latency_scale=latency_scale, seed=seed, overrides=overrides)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        SimulatorApp(sim),
        http="httptools",
        loop="none",  # the caller's loop (uvloop when run from __main__)
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        backlog=4096,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    if exit_on_stdin_eof:
        _watch_stdin(server)
    while not server.started and not task.done():
        await asyncio.sleep(0.005)
    if server.started:
        bound_port = sock.getsockname()[1]
        print(f"{URL_PREFIX}http://{host}:{bound_port}", flush=True)
    await task


def _watch_stdin(server: Any) -> None:
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def on_readable() -> None:
        if not os.read(fd, 4096):
            loop.remove_reader(fd)
            server.should_exit = True

    loop.add_reader(fd, on_readable)


class SimulatorProcess:
    """The simulator in a child process, for ``with`` blocks and pytest fixtures.

    >>> with SimulatorProcess(latency_scale=0) as sim:
    ...     base = simulator_base_url("openai", sim.url)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_scale: float = 1.0,
        seed: int | None = None,
        profiles: str | os.PathLike[str] | Mapping[str, Mapping[str, Any]] | None = None,
        startup_timeout_s: float = 20.0,
        cpu: int | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.latency_scale, self.seed = latency_scale, seed
        self.profiles = profiles
        self.startup_timeout_s = startup_timeout_s
        self.cpu = cpu
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self._tmp: str | None = None

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "actors.simulator", "--host", self.host]
        argv += ["--port", str(self.port), "--latency-scale", str(self.latency_scale)]
        argv += ["--exit-on-stdin-eof"]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        if isinstance(self.profiles, Mapping):
            fd, self._tmp = tempfile.mkstemp(prefix="sim-profiles-", suffix=".yaml")
            with os.fdopen(fd, "w") as fh:
                json.dump(self.profiles, fh)  # JSON is YAML
            argv += ["--profiles", self._tmp]
        elif self.profiles is not None:
            argv += ["--profiles", os.fspath(self.profiles)]
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        return argv

    def start(self) -> SimulatorProcess:
        """Launch and wait until the simulator answers its health check."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            self._argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=_ROOT
        )
        try:
            self.url = self._read_url(time.monotonic() + self.startup_timeout_s)
            self._client = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
            self._client.get("/_sim/health").raise_for_status()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_url(self, deadline: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("simulator did not report its URL in time")
                if sel.select(left):
                    chunk = os.read(out.fileno(), 4096)
                    if not chunk:
                        code = self._proc.wait()
                        raise RuntimeError(f"simulator exited with code {code} before ready")
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode().strip()
        if not line.startswith(URL_PREFIX):
            raise RuntimeError(f"unexpected simulator output: {line!r}")
        return line[len(URL_PREFIX) :]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; idempotent."""
        if self._client is not None:
            self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        if self._tmp is not None:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """Process id of the running simulator (taskset execs, so it is the server's own)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def admin(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("simulator is not running")
        return self._client

    def stats(self) -> Stats:
        r = self.admin.get("/_sim/stats")
        r.raise_for_status()
        return Stats.model_validate_json(r.content)

    def reset_stats(self) -> None:
        self.admin.post("/_sim/stats/reset").raise_for_status()

    def set_profile(self, model: str, **fields: Any) -> Profile:
        """Patch a model's profile at run time; raises ValueError naming the bad field."""
        r = self.admin.put(f"/_sim/profiles/{model}", json=fields)
        if r.status_code == 400:
            raise ValueError(r.json()["error"]["message"])
        r.raise_for_status()
        return Profile.model_validate_json(r.content)

    def reset_profile(self, model: str) -> Profile:
        """Back to the profile the simulator started with."""
        r = self.admin.delete(f"/_sim/profiles/{model}")
        r.raise_for_status()
        return Profile.model_validate_json(r.content)

    def profiles_in_force(self) -> dict[str, Profile]:
        r = self.admin.get("/_sim/profiles")
        r.raise_for_status()
        return {m: Profile.model_validate(p) for m, p in r.json().items()}
