"""`ServeSpec`: the `serve:` section of the router config (endpoint behaviour).

Deployment sizing (replicas, autoscaling, back-pressure) lives in `configs/serve.yaml`, the
Serve config file, so `serve deploy`, `serve run` and `llm-router serve` read one source.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from actors.config import Config

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: Host names a browser on this machine uses for a loopback server. DNS rebinding works by
#: making a foreign name resolve to 127.0.0.1, so only these names are trusted by default.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class AuthSpec(BaseModel):
    """Bearer tokens, read from the environment or a 0600 file (never from this file).

    The endpoint fails closed: it does not start without a client token unless `anonymous`
    is set *and* it binds a loopback address. Admin routes need the admin token; with none
    set they are disabled (403).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_env: str = Field("LLM_ROUTER_API_TOKEN", pattern=_ENV_NAME,
                           description="Env var with the client token.")
    admin_token_env: str = Field("LLM_ROUTER_ADMIN_TOKEN", pattern=_ENV_NAME,
                                 description="Env var with the admin token (budget changes, "
                                 "breaker resets); unset = admin routes disabled.")
    token_file: str | None = Field(None, min_length=1, description="File holding the client "
                                   "token (mode 0600); when set it is used instead of token_env.")
    admin_token_file: str | None = Field(None, min_length=1, description="File holding the "
                                         "admin token (mode 0600); used instead of "
                                         "admin_token_env.")
    anonymous: bool = Field(False, description="Serve client routes without a token. Allowed "
                            "only on a loopback bind address (127.0.0.1, ::1, localhost).")
    public_health: bool = Field(True, description="/healthz answers without a token "
                                "(load balancers and Kubernetes probes send none).")


class IngressSpec(BaseModel):
    """Where `llm-router serve` puts the HAProxy ingress' side listeners (stats page,
    Prometheus metrics). Ray binds them on every interface at fixed ports by default, which
    exposes them and stops a second instance on the same machine from starting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_host: str = Field("127.0.0.1", min_length=1, description="Address of the stats "
                             "and metrics listeners.")
    stats_port: int = Field(0, ge=0, le=65535, description="HAProxy stats page port; 0 = a "
                            "free port chosen at start (printed).")
    metrics_port: int = Field(0, ge=0, le=65535, description="HAProxy Prometheus port; 0 = "
                              "a free port chosen at start (printed).")


class ServeSpec(BaseModel):
    """The `serve:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: AuthSpec = Field(default_factory=AuthSpec)
    allowed_hosts: tuple[str, ...] = Field(
        LOOPBACK_HOSTS, min_length=1, description="Host header values the endpoint answers "
        "(port ignored; `*.example.com` matches subdomains; `*` = any). Blocks DNS rebinding.")
    ingress: IngressSpec = Field(default_factory=IngressSpec)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    max_tokens_limit: int | None = Field(None, gt=0, description="Cap on max_tokens; default the "
                                         "largest max_output_tokens of the enabled providers.")
    default_timeout_s: float | None = Field(None, gt=0, description="Deadline when a request gives "
                                            "none; None = the router's default_timeout_s.")
    max_timeout_s: float = Field(600.0, gt=0, le=3600, description="Largest deadline a client may ask.")
    timeout_grace_s: float = Field(5.0, ge=0, description="Extra wait past the deadline for the "
                                   "router's own answer before the endpoint gives up with 504.")
    start_system: bool = Field(True, description="A replica that finds no router starts the actors "
                               "(so `serve run configs/serve.yaml` works on a bare cluster).")
    stop_grace_s: float = Field(6.0, ge=0, le=10, description="On Ctrl-C / SIGTERM, how long "
                                "`llm-router serve` lets requests in flight finish before it "
                                "stops everything (the whole stop stays under 15 s).")

    @classmethod
    def from_config(cls, config: Config) -> ServeSpec:
        """The section as validated at load (actors/config.py names a bad key there)."""
        return config.serve

    def token_limit(self, config: Config) -> int:
        largest = max(p.max_output_tokens for p in config.providers if p.enabled)
        return min(self.max_tokens_limit, largest) if self.max_tokens_limit else largest
