"""`ServeSpec`: the `serve:` section of the router config (endpoint behaviour).

Deployment sizing (replicas, autoscaling, back-pressure) lives in `configs/serve.yaml`, the
Serve config file, so `serve deploy`, `serve run` and `llm-router serve` read one source.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.config import Config, ConfigError


class AuthSpec(BaseModel):
    """Bearer tokens, read from the environment of the replica (never from this file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_env: str = Field("LLM_ROUTER_API_TOKEN", description="Env var with the client token; "
                           "unset or empty = no auth on ordinary endpoints.")
    admin_token_env: str = Field("LLM_ROUTER_ADMIN_TOKEN", description="Env var with the admin "
                                 "token, needed by admin endpoints (reset) whenever any token is set.")
    public_health: bool = Field(True, description="/healthz answers without a token "
                                "(load balancers and Kubernetes probes send none).")


class ServeSpec(BaseModel):
    """The `serve:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: AuthSpec = Field(default_factory=AuthSpec)
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

    @classmethod
    def from_config(cls, config: Config) -> ServeSpec:
        try:
            return cls.model_validate(config.serve)
        except ValidationError as exc:
            lines = [f"  serve.{'.'.join(map(str, e['loc']))}: "
                     f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                     for e in exc.errors()]
            raise ConfigError("invalid serve configuration\n" + "\n".join(lines)) from None

    def token_limit(self, config: Config) -> int:
        largest = max(p.max_output_tokens for p in config.providers if p.enabled)
        return min(self.max_tokens_limit, largest) if self.max_tokens_limit else largest
