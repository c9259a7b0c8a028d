"""The peer gateways of scripts/bench_router.py, on the same loopback simulator: the
Portkey gateway (Node, installed on request) and LiteLLM's Router in-process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

PORTKEY_VERSION = "1.15.2"
DEFAULT_PORTKEY_DIR = Path.home() / ".cache" / "llm-router" / "portkey"
Call = Callable[[], Awaitable[object]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_portkey(pk_dir: Path, install: bool) -> tuple[subprocess.Popen | None, str | None]:
    entry = pk_dir / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not entry.exists() and install and shutil.which("npm"):
        print(f"  installing @portkey-ai/gateway@{PORTKEY_VERSION} into {pk_dir}", flush=True)
        pk_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(pk_dir), "--no-audit", "--no-fund",
                        f"@portkey-ai/gateway@{PORTKEY_VERSION}"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    if not entry.exists() or not shutil.which("node"):
        print(f"  portkey: not installed in {pk_dir} (use --install-portkey); arm skipped")
        return None, None
    port = _free_port()
    proc = subprocess.Popen(["node", str(entry), f"--port={port}", "--headless"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "NODE_ENV": "production"},
                            start_new_session=True)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}/v1/chat/completions"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    print("  portkey: did not start; arm skipped")
    return None, None


def litellm_arm(sim_url: str, prompt: str) -> Call | None:
    """LiteLLM's Router in-process on the same simulator (issue 3's peer arm), if installed."""
    if importlib.util.find_spec("litellm") is None:
        return None
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = litellm.Router(model_list=[{"model_name": "gpt-4-turbo", "litellm_params": {
        "model": "openai/gpt-4-turbo", "api_base": sim_url + "/v1", "api_key": "sk-bench"}}])

    async def call() -> object:
        return await router.acompletion(model="gpt-4-turbo", max_tokens=256,
                                        messages=[{"role": "user", "content": prompt}])

    return call
