"""Per-model behaviour of the simulator: latency, injected faults, limits and answer style.

Tests and benchmarks steer the simulator through these profiles (at start from a YAML file,
at run time by ``PUT /_sim/profiles/{model}``), so every knob is a validated field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Injected fault kinds, in the order one uniform draw is matched against them.
FAULTS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "overloaded",
    "timeout",
    "malformed",
    "invalid_output",
    "cut",
    "stream_error",
)

#: Key of the profile used for models that have none of their own.
DEFAULT_KEY = "default"


class Profile(BaseModel):
    """How one simulated model behaves. Probabilities are per request and must sum to <= 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Latency: base_ms * lognormal(0, jitter) + ms_per_token * output tokens, times latency_scale.
    base_ms: float = Field(500.0, ge=0, description="Median time to first byte, in ms.")
    jitter: float = Field(
        0.25, ge=0, le=3, description="Sigma of the lognormal latency multiplier."
    )
    ms_per_token: float = Field(0.0, ge=0, description="Decode time per output token, in ms.")

    # Injected faults.
    rate_limit: float = Field(0.0, ge=0, le=1, description="P(429 with retry-after headers).")
    server_error: float = Field(0.0, ge=0, le=1, description="P(500).")
    overloaded: float = Field(0.0, ge=0, le=1, description="P(529 for anthropic, 503 otherwise).")
    timeout: float = Field(0.0, ge=0, le=1, description="P(hang for hang_s, then 504).")
    malformed: float = Field(0.0, ge=0, le=1, description="P(200 with broken JSON or no usage).")
    invalid_output: float = Field(
        0.0, ge=0, le=1, description="P(200, valid envelope, prose text)."
    )
    cut: float = Field(
        0.0, ge=0, le=1, description="P(connection dropped halfway through the answer).")
    stream_error: float = Field(
        0.0, ge=0, le=1, description="P(an overloaded error event halfway through a stream; "
        "529/503 when not streamed).")
    malformed_kind: Literal["random", "not_json", "truncated", "no_usage"] = Field(
        "random", description="Which broken body (or, streamed, which broken event) the "
        "malformed fault sends.")
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After sent with injected 429s.")
    hang_s: float = Field(
        120.0,
        ge=0,
        description="Timeout fault duration; not scaled, so it outlasts client timeouts.",
    )
    down: bool = Field(False, description="Every request gets 503 (provider outage).")

    # Account limits over a sliding 60 s window; exceeding them is a 429 'by limit'.
    rpm: int | None = Field(None, gt=0, description="Requests per minute, or no limit.")
    tpm: int | None = Field(None, gt=0, description="Input+output tokens per minute, or no limit.")

    # Streams: the time to first token is the latency above without the decode part; the
    # answer then comes in stream_chunks frames, stream_interval_ms apart (or the decode
    # time spread over them).
    stream_chunks: int = Field(20, ge=1, le=1000, description="Frames a streamed answer takes.")
    stream_interval_ms: float | None = Field(
        None, ge=0, description="Gap between frames; unset = ms_per_token × tokens / frames.")
    stream_usage_always: bool = Field(
        False, description="OpenAI format: usage in the last chunk even unasked (Mistral, "
        "Together); OpenAI itself sends it only for stream_options.include_usage.")

    # Token accounting as vendors bill it.
    thinking_tokens: int = Field(
        0, ge=0, description="Tokens the model thinks when thinking is on (Gemini 2.5: by "
        "default; Claude: when asked); they count against max_tokens.")
    cache_min_tokens: int | None = Field(
        None, ge=1, description="Prompt caching: a system prompt of at least this many tokens "
        "seen in the last 5 minutes is a cache read (Claude: only when marked cache_control); "
        "unset = no caching.")

    # Answer style: models differ in how sure they sound and which way they lean.
    confidence_mean: float = Field(0.6, ge=0, le=1, description="Mean stated confidence.")
    confidence_spread: float = Field(0.1, ge=0, le=1, description="Std-dev of stated confidence.")
    bias: float = Field(0.0, ge=-1, le=1, description="Lean: >0 towards long, <0 towards short.")
    fence_prob: float = Field(0.0, ge=0, le=1, description="P(answer wrapped in a ```json fence).")

    @model_validator(mode="after")
    def _faults_fit(self) -> Profile:
        total = sum(getattr(self, f) for f in FAULTS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities sum to {total:.3f}, must be <= 1")
        return self

    @property
    def faulty(self) -> bool:
        """Whether any fault has a chance (skips a random draw on the hot path)."""
        return any(getattr(self, f) for f in FAULTS)

    def pick_fault(self, u: float) -> str | None:
        """Map one uniform draw in [0, 1) to a fault kind, or None for a normal answer."""
        acc = 0.0
        for name in FAULTS:
            acc += getattr(self, name)
            if u < acc:
                return name
        return None

    def patched(self, fields: Mapping[str, Any]) -> Profile:
        """A validated copy with some fields replaced (``model_copy`` would skip validation)."""
        return Profile.model_validate({**self.model_dump(), **fields})


#: Shipped models (configs/providers.yaml): different speeds and temperaments, no faults.
DEFAULT_PROFILES: dict[str, Profile] = {
    DEFAULT_KEY: Profile(),
    "claude-sonnet-4-5": Profile(
        base_ms=700, jitter=0.25, ms_per_token=5, confidence_mean=0.68,
        confidence_spread=0.08, bias=0.05, fence_prob=0.2, thinking_tokens=300,
        cache_min_tokens=1024,
    ),
    "gemini-2.5-pro": Profile(
        base_ms=900, jitter=0.35, ms_per_token=4, confidence_mean=0.72,
        confidence_spread=0.10, bias=0.10, fence_prob=0.9, thinking_tokens=400,
        cache_min_tokens=2048,
    ),
    "gpt-4-turbo": Profile(
        base_ms=600, jitter=0.30, ms_per_token=8, confidence_mean=0.65,
        confidence_spread=0.06, bias=0.0, fence_prob=0.1,
    ),  # gpt-4-turbo has no prompt caching (OpenAI caches gpt-4o and later)
    "open-mixtral-8x7b": Profile(
        base_ms=350, jitter=0.40, ms_per_token=2, confidence_mean=0.60,
        confidence_spread=0.15, bias=-0.10, fence_prob=0.5, stream_usage_always=True,
    ),
    "meta-llama/Llama-3.3-70B-Instruct-Turbo": Profile(
        base_ms=300, jitter=0.30, ms_per_token=2, confidence_mean=0.62,
        confidence_spread=0.12, bias=0.15, fence_prob=0.3, stream_usage_always=True,
    ),
}  # fmt: skip


class ProfileBook:
    """The profiles in force: startup ones (defaults + file) plus run-time patches."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._start = build_profiles(overrides or {})
        self._now = dict(self._start)

    def get(self, model: str) -> Profile:
        return self._now.get(model) or self._now[DEFAULT_KEY]

    def patch(self, model: str, fields: Mapping[str, Any]) -> Profile:
        """Replace some fields of a model's profile (raises pydantic ValidationError)."""
        self._now[model] = self.get(model).patched(fields)
        return self._now[model]

    def restore(self, model: str) -> Profile:
        """Back to the startup profile (or drop a model that only existed as a patch)."""
        if model in self._start:
            self._now[model] = self._start[model]
        else:
            self._now.pop(model, None)
        return self.get(model)

    def all(self) -> dict[str, Profile]:
        return dict(self._now)


def build_profiles(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Profile]:
    """Defaults with per-model overrides applied; errors name the model and the key."""
    out = dict(DEFAULT_PROFILES)
    for model, fields in overrides.items():
        if not isinstance(fields, Mapping):
            raise ValueError(f"profiles.{model}: must be a mapping of profile fields")
        base = out.get(model) or out[DEFAULT_KEY]
        try:
            out[model] = base.patched(fields)
        except ValidationError as exc:
            where = ", ".join(
                f"profiles.{model}.{'.'.join(map(str, e['loc'])) or '<profile>'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(where) from None
    return out


def load_profiles(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a YAML mapping ``{model: {field: value}}`` (``default`` patches the fallback)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping of model -> profile fields")
    build_profiles(data)  # validate early so the CLI fails before binding a port
    return data
