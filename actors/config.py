"""Configuration: `configs/providers.yaml` loaded into validated pydantic models.

A new provider is a new entry in the YAML, not new code. Errors name the entry and key,
e.g. ``providers[2] (gpt-4-turbo).rpm: Input should be greater than 0``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from actors.config_sections import (
    CacheSection,
    IdempotencySection,
    RouterSection,
    ServeSection,
    TrackerSection,
)
from actors.core.budget import BudgetSpec
from actors.shells.metrics import MetricsSpec
from actors.shells.placement import PlacementSpec
from prompts.regime import RegimeRules

ENV_CONFIG = "LLM_ROUTER_CONFIG"
ENV_STATE_DIR = "LLM_ROUTER_STATE_DIR"
DEFAULT_STATE_DIR = "~/.cache/llm-router"
AUDIT_DB = "audit.sqlite3"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "providers.yaml"
WireApi = Literal["anthropic", "openai", "gemini"]
#: Hosts of the OpenAI wire format differ in the parameters they take (Mistral's
#: `random_seed`, Together's integer `logprobs`, Groq's usage in `x_groq`).
Dialect = Literal["openai", "mistral", "together", "groq"]


class ConfigError(ValueError):
    """The configuration file is missing or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerSpec(_Strict):
    """Circuit breaker thresholds for one provider."""

    failure_rate: float = Field(0.5, gt=0, le=1, description="Open when this share of the window failed.")
    min_requests: int = Field(10, ge=1, description="Window size needed before failure_rate applies.")
    consecutive_failures: int = Field(5, ge=1, description="Open after this many failures in a row.")
    window_s: float = Field(30.0, gt=0, description="Seconds of outcomes the failure rate looks at.")
    open_s: float = Field(15.0, gt=0, description="How long to stay open before probing.")
    max_open_s: float = Field(120.0, gt=0, description="Cap on open time, also for a Retry-After.")
    half_open_probes: int = Field(2, ge=1, description="Probe requests allowed while half-open.")
    probe_successes: int = Field(2, ge=1, description="Successful probes needed to close again.")


class RetrySpec(_Strict):
    """Retries of one request on the same provider (tenacity, full jitter)."""

    max_attempts: int = Field(2, ge=1, le=10, description="Attempts per provider, first included.")
    base_s: float = Field(0.5, ge=0, description="First backoff ceiling; doubles each attempt.")
    max_s: float = Field(8.0, ge=0, description="Cap on one backoff.")


class Capabilities(_Strict):
    """Which request parameters a provider honours. In a provider's config every key is
    optional: an unset one keeps the default of its wire format and host (the table in
    actors/clients/capabilities.py, documented in README)."""

    stop: bool | None = Field(None, description="Stop sequences.")
    max_stop: int | None = Field(None, gt=0, description="Most stop sequences in one request.")
    top_p: bool | None = Field(None, description="Nucleus sampling.")
    temperature_and_top_p: bool | None = Field(
        None, description="Both temperature and top_p in one request (Claude 4.5+: no).")
    seed: bool | None = Field(None, description="Seeded sampling.")
    penalties: bool | None = Field(None, description="presence_penalty / frequency_penalty.")
    logprobs: bool | None = Field(None, description="Token log probabilities.")
    max_top_logprobs: int | None = Field(None, ge=0, description="Largest top_logprobs.")
    max_n: int | None = Field(None, ge=1, description="Most choices (n) in one request.")
    tools: bool | None = Field(None, description="Tool / function calling.")
    parallel_tool_calls: bool | None = Field(
        None, description="Can be told not to call tools in parallel.")
    json_object: bool | None = Field(None, description="response_format json_object.")
    json_schema: bool | None = Field(None, description="response_format json_schema.")
    tools_with_json: bool | None = Field(
        None, description="Tools and a JSON response_format in one request.")
    thinking: bool | None = Field(None, description="A thinking-token budget.")
    min_thinking_budget: int | None = Field(None, ge=0, description="Smallest budget above 0.")
    max_thinking_budget: int | None = Field(None, ge=0, description="Largest budget.")


class ProviderSpec(_Strict):
    """One configured model endpoint. These key names are the public config contract."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Unique provider name.")
    api: WireApi = Field(description="Wire format: anthropic, openai or gemini.")
    model: str = Field(min_length=1, description="The vendor's model id.")
    base_url: str = Field(description="API base URL, e.g. https://api.openai.com/v1.")
    api_key_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Env var holding the key.")
    input_cost_per_mtok: float = Field(ge=0, description="USD per 1M input tokens.")
    output_cost_per_mtok: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input_cost_per_mtok: float | None = Field(
        None, ge=0, description="USD per 1M input tokens read from the vendor's prompt cache; "
        "unset = the input price (no discount).")
    cache_write_cost_per_mtok: float | None = Field(
        None, ge=0, description="USD per 1M input tokens written to the prompt cache "
        "(Anthropic bills 1.25x input); unset = the input price.")
    max_input_tokens: int = Field(gt=0, description="Context window for the prompt.")
    max_output_tokens: int = Field(gt=0, description="Largest completion the model allows.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Per-attempt HTTP timeout.")
    rpm: int = Field(gt=0, description="Requests per minute allowed by the account.")
    tpm: int = Field(gt=0, description="Tokens per minute allowed by the account.")
    max_concurrency: int = Field(16, gt=0, description="Attempts in flight at once.")
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    enabled: bool = Field(True, description="Disabled providers are not started.")
    thinking_budget: int | None = Field(
        None, ge=-1, description="Thinking tokens per answer (Gemini thinkingBudget, Claude "
        "extended thinking): -1 = the model decides, 0 = off, unset = the vendor's default. "
        "Sent capped at half the request's max_tokens, so an answer always has room.")
    dialect: Dialect | None = Field(
        None, description="For api: openai, the host's variant; unset = from base_url.")
    capabilities: Capabilities = Field(
        default_factory=Capabilities, description="Overrides of the parameters it honours.")
    batch_discount: float | None = Field(
        None, gt=0, le=1, description="Its batch API's price as a share of the synchronous one "
        "(0.5 for OpenAI, Anthropic and Gemini); unset = no batch API used "
        "(actors/clients/batch.py).")
    optional: bool = Field(False, description="Without its key, leave this provider out (with a "
                           "warning) instead of failing start-up.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _fits_the_wire_format(self) -> ProviderSpec:
        if self.dialect is not None and self.api != "openai":
            raise ValueError(f"dialect: only applies to api: openai, not {self.api}")
        if self.thinking_budget is not None and self.api == "openai":
            raise ValueError("thinking_budget: the OpenAI chat format has no thinking budget "
                             "(api: anthropic or gemini)")
        return self

    @property
    def api_key(self) -> str | None:
        """The key from the environment; never stored on the model, never logged."""
        return os.environ.get(self.api_key_env) or None


SimulatorMode = Literal["never", "always"]
#: What `simulator.mode: auto` used to do, and why it is refused now.
AUTO_REMOVED = (
    "'auto' was removed: it answered with the built-in simulator's made-up data whenever a "
    "key variable was unset. Use 'never' (the default: real APIs; a provider without its key "
    "stops start-up) or 'always' (every provider simulated: demos and tests; also "
    "`llm-router serve --simulate` or `connect(simulate=True)`)")


class SimulatorSpec(_Strict):
    """The built-in provider simulator: used only when chosen explicitly, for every provider."""

    mode: SimulatorMode = Field(
        "never", description="never: real APIs only; always: every provider is simulated.")
    host: str = Field("127.0.0.1", description="Loopback address to bind.")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port.")
    latency_scale: float = Field(1.0, ge=0, description="Multiplies every profile's latency.")

    @field_validator("mode", mode="before")
    @classmethod
    def _no_auto(cls, v: Any) -> Any:
        if v == "auto":
            raise ValueError(AUTO_REMOVED)
        return v


class Config(_Strict):
    """The whole router configuration, every section validated here, once, at load."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    providers: list[ProviderSpec] = Field(min_length=1)
    simulator: SimulatorSpec = Field(default_factory=SimulatorSpec)
    router: RouterSection = Field(default_factory=dict, validate_default=True,
                                  description="Router settings (actors.routing.router.RouterSpec).")
    tracker: TrackerSection = Field(default_factory=dict, validate_default=True,
                                    description="Tracker settings (actors.shells.tracker.TrackerSpec).")
    budgets: BudgetSpec = Field(default_factory=BudgetSpec, description="Spend limits.")
    serve: ServeSection = Field(default_factory=dict, validate_default=True,
                                description="HTTP endpoint settings (serve.spec.ServeSpec).")
    regime: RegimeRules = Field(
        default_factory=RegimeRules,
        description="Market regime rule of every context built from bars (prompts.regime).",
    )
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec,
        description="Where the stateful actors run (actors/shells/placement.py): the head node by default.",
    )
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec,
        description="Label bounds of the router's request metrics (actors/shells/metrics.py).",
    )
    idempotency: IdempotencySection = Field(
        default_factory=dict, validate_default=True,
        description="Request ids as idempotency keys (actors.stores.idempotency.IdempotencySpec).")
    cache: CacheSection = Field(
        default_factory=dict, validate_default=True,
        description="The response cache (actors.stores.response_cache.CacheSpec).")
    state_dir: str = Field(description="This instance's own directory (audit DB, journal, "
                           "budget overrides, idempotency store, HMAC key, lock); resolved at load.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_state_dir(cls, data: Any) -> Any:
        """Fix the state directory (and the audit DB's default place in it) once, as an
        absolute path, in the process that loads the config: actors started elsewhere get
        the same directory, whatever their working directory or environment."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        tracker = data.get("tracker")
        db = tracker.get("db_path") if isinstance(tracker, dict) else None
        chosen = data.get("state_dir")
        if isinstance(db, str | os.PathLike):
            db = os.path.abspath(os.path.expanduser(os.fspath(db)))
            data["tracker"] = {**tracker, "db_path": db}
            if chosen is None:
                chosen = os.path.dirname(db)
        if chosen is None:
            chosen = os.environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR
        if isinstance(chosen, str | os.PathLike):
            state = os.path.abspath(os.path.expanduser(os.fspath(chosen)))
            data["state_dir"] = state
            if tracker is None or (isinstance(tracker, dict) and db is None):
                data["tracker"] = {**(tracker or {}), "db_path": os.path.join(state, AUDIT_DB)}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for i, p in enumerate(self.providers):
            if p.name in seen:
                raise ValueError(f"providers[{i}].name: duplicate provider name {p.name!r}")
            seen.add(p.name)
        return self

    def provider(self, name: str) -> ProviderSpec:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(f"unknown provider {name!r}; configured: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers if p.enabled]

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def simulate(self) -> bool:
        """Whether the simulator answers for every provider (chosen explicitly, never implied
        by a missing key)."""
        return self.simulator.mode == "always"

    def simulated(self, spec: ProviderSpec) -> bool:
        """Whether this provider is served by the simulator: all of them or none."""
        return self.simulate

    def with_state_dir(self, path: str | os.PathLike[str]) -> Config:
        """This configuration as another instance: its own state directory and audit DB."""
        state = os.path.abspath(os.path.expanduser(os.fspath(path)))
        data = self.model_dump(mode="json", exclude_unset=True)
        data["state_dir"] = state
        data["tracker"] = {**data.get("tracker", {}), "db_path": os.path.join(state, AUDIT_DB)}
        return Config.model_validate(data)

    def with_sections(self, **sections: Any) -> Config:
        """This configuration with whole sections replaced, validated like a loaded file
        (a bare `model_copy(update=...)` would leave a section an unchecked mapping)."""
        data = self.model_dump(mode="json", exclude_unset=True)
        data.update(sections)
        return parse_config(data, "config with replaced sections")

    def simulating(self) -> Config:
        """This configuration with the simulator answering for every provider."""
        if self.simulate:
            return self
        return self.model_copy(update={"simulator": self.simulator.model_copy(
            update={"mode": "always"})})


def _where(cfg: dict[str, Any], loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, key in enumerate(loc):
        if isinstance(key, int):
            label = f"[{key}]"
            if i == 1 and loc[0] == "providers":
                try:
                    label += f" ({cfg['providers'][key]['name']})"
                except (KeyError, IndexError, TypeError):
                    pass
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(key))
    return "".join(parts) or "<top level>"


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate already-loaded YAML/JSON data; raise ConfigError naming entry and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping with a 'providers' list")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"  {_where(data, tuple(err['loc']))}: {msg}")
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines)) from None


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """`--config` wins, then $LLM_ROUTER_CONFIG, then the shipped default."""
    chosen = path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG
    return Path(chosen)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    p = config_path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read configuration ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))
