"""The Ray dashboard and Prometheus endpoints of the cluster the router runs on.

Ray ≥ 2.59 turns token authentication on for clusters `ray.init()` starts: the dashboard's
REST API (and `ray list actors`, which uses it) answers 401 without the token. Ray reads
the token from `$RAY_AUTH_TOKEN`, else the file `$RAY_AUTH_TOKEN_PATH`, else
`~/.ray/auth_token`; its CLI sends it only when `RAY_AUTH_MODE=token` is set. The Prometheus
endpoints (one per node) need no token. The token is sent, never printed or logged.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Collection
from typing import Any

import httpx
from pydantic import BaseModel, Field

CHECK_TIMEOUT_S = 30.0


def add_dashboard_flag(p: argparse.ArgumentParser) -> None:
    """`--no-dashboard` for commands that may start Ray (the dashboard is on by default)."""
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                   help="start local Ray without its dashboard (it adds ~1 GB of memory, 11 processes)")


def ray_init_options(dashboard: bool) -> dict[str, bool]:
    """`connect()` keyword arguments for the dashboard choice (on is connect's default)."""
    return {} if dashboard else {"include_dashboard": False}


def token_source() -> str:
    """Where Ray takes the token from, for people (the token itself is never shown)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    return "~/.ray/auth_token"


def token_auth_on() -> bool:
    """Whether this process speaks token authentication to Ray (set by `RAY_AUTH_MODE=token`,
    or by `ray.init()` when it starts a local instance or finds one with `auto`)."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode

        return get_authentication_mode() == AuthenticationMode.TOKEN
    except Exception:
        return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def auth_headers() -> dict[str, str]:
    """The dashboard's Authorization header, from wherever Ray keeps the token; empty when
    there is none (a cluster without token authentication ignores it anyway)."""
    try:
        from ray._raylet import AuthenticationTokenLoader

        loader = AuthenticationTokenLoader.instance()
        if not loader.has_token(ignore_auth_mode=True):
            return {}
        return {"authorization": "Bearer " + loader.get_raw_token(ignore_auth_mode=True)}
    except Exception:  # an older or minimal Ray: no token support
        return {}


def _http(hostport: str) -> str:
    """`host:port` as a URL a browser on this machine reaches (0.0.0.0 binds every address)."""
    hostport = hostport.removeprefix("http://").removeprefix("https://")
    host, _, port = hostport.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def dashboard_url() -> str | None:
    """The dashboard of the Ray this process is connected to, or None when it runs without."""
    try:
        import ray
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url() if ray.is_initialized() else None
    except Exception:  # a ray:// client has no local node: ask the cluster's KV
        try:
            from ray._private.services import get_webui_url_from_internal_kv

            url = get_webui_url_from_internal_kv()
        except Exception:
            url = None
    return _http(url) if url else None


def metrics_urls() -> list[str]:
    """Every live node's Prometheus endpoint (what a scrape config lists)."""
    import ray

    out = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port and port > 0:
            out.append(f"{_http(str(node['NodeManagerAddress']) + ':' + str(port))}/metrics")
    return out


def expected_actors(providers: Collection[str]) -> list[str]:
    from actors.shells.router_actor import provider_actor_name

    return ["router", "tracker", *(provider_actor_name(p) for p in providers)]


class DashboardCheck(BaseModel):
    """What the dashboard answered when asked for the router's actors."""

    url: str
    answered: bool = Field(description="It answered the REST API with the actor list.")
    status: int | None = Field(None, description="HTTP status of the last answer.")
    alive: list[str] = Field(default_factory=list, description="Named actors listed ALIVE.")
    missing: list[str] = Field(default_factory=list, description="Expected but not listed.")
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.answered and not self.missing

    def summary(self) -> str:
        if self.ok:
            providers = sum(1 for n in self.alive if n.startswith("provider:"))
            return f"answers; lists router, tracker and {providers} provider actors"
        if self.status in (401, 403):
            return (f"answers {self.status}: the token was refused (Ray reads it from "
                    f"{token_source()})")
        if not self.answered:
            return f"did not answer ({self.error or self.status})"
        return "answers, but does not list " + ", ".join(self.missing)


def list_actors(url: str, client: httpx.Client) -> httpx.Response:
    """The state API's actor list of the router's namespace (what the dashboard shows)."""
    from actors.shells.tracker import NAMESPACE

    return client.get(f"{url}/api/v0/actors", headers=auth_headers(), params={
        "filter_keys": "ray_namespace", "filter_predicates": "=", "filter_values": NAMESPACE,
        "limit": 10000, "detail": "false"})


def named_alive(body: dict[str, Any]) -> list[str]:
    """Names of the ALIVE actors in a state API answer."""
    rows = ((body.get("data") or {}).get("result") or {}).get("result") or []
    return sorted(r["name"] for r in rows if r.get("name") and r.get("state") == "ALIVE")


def check_dashboard(url: str, expected: Collection[str],
                    timeout_s: float = CHECK_TIMEOUT_S) -> DashboardCheck:
    """Ask the dashboard for the router's actors until it lists all of `expected` or the
    time is up (it takes a few seconds to see actors that just started)."""
    deadline = time.monotonic() + timeout_s
    check = DashboardCheck(url=url, answered=False, missing=sorted(expected))
    with httpx.Client(timeout=10.0) as client:
        while True:
            try:
                r = list_actors(url, client)
                check.status, check.error = r.status_code, None
                if r.status_code in (401, 403):
                    return check
                if r.status_code == 200:
                    check.answered = True
                    check.alive = named_alive(r.json())
                    check.missing = sorted(set(expected) - set(check.alive))
                    if not check.missing:
                        return check
            except (httpx.HTTPError, ValueError) as exc:
                check.error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                return check
            time.sleep(0.5)


def cluster_lines(providers: Collection[str], check: bool = True) -> list[str]:
    """What a command that started (or joined) the router prints about watching it."""
    lines = []
    url = dashboard_url()
    if url is None:
        lines.append("dashboard: off (started without it)")
    else:
        state = check_dashboard(url, expected_actors(providers)).summary() if check else ""
        lines.append(f"dashboard: {url}" + (f" — {state}" if state else ""))
        lines.append(f"  token for its REST API / `ray list actors`: RAY_AUTH_MODE=token, token "
                     f"in {token_source()} (`ray get-auth-token`)")
    urls = metrics_urls()
    if urls:
        lines.append(f"Prometheus: {', '.join(urls)} (ray_llm_router_* series)")
    # An explicit address never sends the token unless asked to (Ray's rule: it would hand
    # the token to whatever listens there), so the command says so when the cluster wants it.
    mode = "RAY_AUTH_MODE=token " if token_auth_on() else ""
    lines.append(f"health from the CLI: {mode}llm-router status --address "
                 f"{_gcs_address() or 'auto'}")
    return lines


def _gcs_address() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().gcs_address
    except Exception:
        return None
