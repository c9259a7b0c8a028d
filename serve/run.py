"""Start the endpoint: Ray (or join it), the router's actors, then the Serve app; stop it all
on Ctrl-C or SIGTERM within 15 s (serve/stopping.py).

`configs/serve.yaml` is a plain Serve config file; `llm-router serve` reads the same file so
`serve run`, `serve deploy` and the CLI deploy one thing the same way (`serve.app`).
"""

from __future__ import annotations

import inspect
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from ray import serve
from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

from actors.config import Config, ConfigError
from serve.auth import AuthDigests, digests, require_loopback
from serve.ingress import INGRESS_ENV, HAProxyIngress, choose_ingress, prepare
from serve.spec import ServeSpec
from serve.stopping import stop

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVE_CONFIG = ROOT / "configs" / "serve.yaml"
APP_IMPORT_PATH = "serve.app:build"
_OPTION_NAMES = None


def load_serve_config(path: str | os.PathLike[str] | None = None) -> ServeDeploySchema:
    p = Path(path or DEFAULT_SERVE_CONFIG)
    try:
        return ServeDeploySchema.model_validate(yaml.safe_load(p.read_text()))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read Serve config ({exc.strerror})") from None
    except Exception as exc:  # pydantic / YAML errors, shown with the file name
        raise ConfigError(f"{p}: invalid Serve config: {exc}") from None


def app_schema(schema: ServeDeploySchema) -> ServeApplicationSchema:
    for a in schema.applications:
        if a.import_path == APP_IMPORT_PATH:
            return a
    raise ConfigError(f"no application with import_path {APP_IMPORT_PATH!r} in the Serve config")


def deployment_options(app: ServeApplicationSchema) -> dict[str, Any]:
    """`.options()` for the ingress from the Serve config (nothing secret is added: the
    replicas get keyed MACs of the tokens as arguments, see serve/auth.py)."""
    global _OPTION_NAMES
    if _OPTION_NAMES is None:
        from serve.app import RouterIngress

        _OPTION_NAMES = set(inspect.signature(RouterIngress.options).parameters)
    d: DeploymentSchema | None = next((d for d in app.deployments if d.name == "RouterIngress"),
                                      None)
    return ({k: v for k, v in d.model_dump(exclude_unset=True).items()
             if k in _OPTION_NAMES and k != "name"} if d else {})


def http_options(schema: ServeDeploySchema, host: str | None = None,
                 port: int | None = None) -> dict[str, Any]:
    """The Serve config's `http_options` with the command line's host and port applied."""
    http = schema.http_options.model_dump(exclude_unset=True)
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    return http


def deploy(config: Config, schema: ServeDeploySchema, *, host: str | None = None,
           port: int | None = None, auth: AuthDigests | None = None) -> str:
    """Start Serve (if needed) and deploy the app on the Ray that is already initialized.

    Returns the base URL. The router's actors must be running (`actors.api.connect`).
    `auth`: the tokens' keyed MACs, read from the config's token variables or files when None.
    """
    from serve.app import application

    app = app_schema(schema)
    http = http_options(schema, host, port)
    built = application(config, auth, **deployment_options(app))  # refuses: no token
    serve.start(http_options=http, proxy_location=schema.proxy_location)
    serve.run(built, name=app.name, route_prefix=app.route_prefix or "/", blocking=False,
              logging_config=app.logging_config)
    h = http.get("host") or "127.0.0.1"
    h = "127.0.0.1" if h in ("0.0.0.0", "::") else f"[{h}]" if ":" in h else h
    return f"http://{h}:{http.get('port', 8000)}{(app.route_prefix or '/').rstrip('/')}"


def port_free(host: str, port: int) -> None:
    """Refuse at once, before Ray starts, a port something already listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): another "
                              "server (another llm-router serve?) has it; choose --port") from None


class _Stop(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT both stop the server, as uvicorn's do. SIGINT explicitly: a
    process started in the background by a non-interactive shell inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt, so Ctrl-C (or `kill -INT`) did nothing
    and left every Ray process running (seen in CI runs launched that way)."""
    def raise_stop(signum: int, _frame: Any) -> None:
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGTERM, raise_stop),  # Ray's own handler exits at once
        (signal.SIGINT, signal.default_int_handler))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def run(config_path: str | None, serve_config: str | None, address: str | None,
        host: str | None, port: int | None, *, ingress: str = "auto",
        dashboard: bool = True, simulate: bool = False) -> int:
    """`llm-router serve`: start or join Ray, start the actors, deploy, wait for Ctrl-C."""
    from actors.config import load_config

    cfg = load_config(config_path)
    cfg = cfg.simulating() if simulate else cfg
    spec = ServeSpec.from_config(cfg)
    schema = load_serve_config(serve_config)
    auth = digests(spec.auth)  # fail closed before anything starts
    http = http_options(schema, host, port)
    require_loopback(auth, http.get("host"))
    if not address:
        port_free(http.get("host") or "0.0.0.0", http.get("port", 8000))
    t0 = time.time()
    haproxy: HAProxyIngress | None = None
    if address:
        print("==> ingress path: whatever the cluster was started with "
              "(RAY_SERVE_THROUGHPUT_OPTIMIZED / RAY_SERVE_ENABLE_HA_PROXY at `ray start`)")
    else:
        mode = choose_ingress(ingress)
        if mode == "haproxy":
            haproxy = prepare(spec.ingress)
            os.environ.update(haproxy.env)
        for key, value in INGRESS_ENV[mode].items():
            os.environ.setdefault(key, value)  # read by Ray's processes when they start
        print(f"==> ingress path: {mode}")
    try:
        return _serve(cfg, spec, schema, auth, address, host, port, haproxy, t0, dashboard)
    finally:
        if haproxy is not None:
            haproxy.close()


def _serve(cfg: Config, spec: ServeSpec, schema: ServeDeploySchema, auth: AuthDigests,
           address: str | None, host: str | None, port: int | None,
           haproxy: HAProxyIngress | None, t0: float, dashboard: bool) -> int:
    from actors.api import connect, describe_lines
    from actors.dashboard import cluster_lines, ray_init_options

    print(f"==> {'joining Ray at ' + address if address else 'starting local Ray'} "
          "and the router's actors", flush=True)
    llm = connect(address, cfg, **ray_init_options(dashboard))
    for line in describe_lines(llm.describe()):
        print(f"    {line}", flush=True)
    with _stop_on_signals():
        try:
            url = deploy(cfg, schema, host=host, port=port, auth=auth)
            print(f"==> serving on {url} (ready in {time.time() - t0:.1f} s)")
            print(f"    OpenAI base_url: {url}/v1  ·  health: {url}/healthz  ·  "
                  "Ctrl-C or SIGTERM stops")
            if haproxy is not None:
                print(f"    HAProxy stats: http://{haproxy.host}:{haproxy.stats_port}/stats  ·"
                      f"  metrics: http://{haproxy.host}:{haproxy.metrics_port}/metrics")
            print(f"    admin routes: {'on' if auth.admin else 'off (no admin token)'}"
                  f"  ·  client token: {'none (anonymous, loopback)' if auth.anonymous else 'on'}",
                  flush=True)
            for line in cluster_lines(llm.config.names):
                print(f"    {line}", flush=True)
            while True:
                time.sleep(3600)
        except (KeyboardInterrupt, _Stop):
            pass
    if address:  # a joined cluster keeps the app and the actors, like `serve deploy`
        print("==> detached; the app keeps running (`serve shutdown` stops it)")
        return 0
    print(f"==> stopping (in-flight requests get up to {spec.stop_grace_s:g} s)", flush=True)
    stop(llm, spec.stop_grace_s, haproxy.close if haproxy is not None else None)
    return 0
