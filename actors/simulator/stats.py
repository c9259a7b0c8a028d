"""What the simulator did, per model: the ground truth tests and benchmarks check the router against."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

UNKNOWN_MODEL = "<unknown>"


class ModelStats(BaseModel):
    """Counts of API requests for one model, by outcome (``requests`` is the sum of the
    outcome counts; `streams_cancelled` is a detail of them), and the tokens billed."""

    requests: int = Field(0, description="Every API request attributed to this model.")
    ok: int = Field(0, description="200 with a normal answer.")
    rate_limit: int = Field(0, description="Injected 429s.")
    server_error: int = Field(0, description="Injected 500s.")
    overloaded: int = Field(0, description="Injected 529 (anthropic) / 503.")
    timeout: int = Field(0, description="Injected hangs (504 after hang_s).")
    malformed: int = Field(0, description="Injected 200s with a broken body.")
    invalid_output: int = Field(0, description="Injected 200s whose text holds no JSON.")
    cut: int = Field(0, description="Injected connection drops halfway through an answer.")
    stream_error: int = Field(0, description="Injected error events mid-stream (or 529/503).")
    down: int = Field(0, description="503s because the profile says the model is down.")
    rate_limited_by_limit: int = Field(0, description="429s because the caller exceeded rpm/tpm.")
    bad_request: int = Field(0, description="400s: malformed JSON or missing fields.")
    unauthorized: int = Field(0, description="401s: no API key sent.")
    streams_cancelled: int = Field(
        0, description="Of the above, streams the client left before their end (not part of "
        "the sum).")
    input_tokens: int = Field(0, description="Prompt tokens billed: every 200 answer (ok, "
                              "invalid output or malformed body), as a provider bills them.")
    output_tokens: int = Field(0, description="Completion tokens billed, likewise.")


class Stats(BaseModel):
    """``GET /_sim/stats``. Requests whose model is unknown (401, bad JSON) go under <unknown>."""

    models: dict[str, ModelStats] = Field(default_factory=dict)
    totals: ModelStats = Field(default_factory=ModelStats)


class StatsBook:
    """Plain counters on the hot path; pydantic only when someone asks."""

    def __init__(self) -> None:
        self._by_model: dict[str, Counter[str]] = {}

    def add(self, model: str, outcome: str) -> None:
        c = self._by_model.get(model)
        if c is None:
            c = self._by_model[model] = Counter()
        c["requests"] += 1
        c[outcome] += 1

    def cancelled(self, model: str) -> None:
        """A stream the client left early; it was already counted by its outcome."""
        c = self._by_model.get(model)
        if c is None:
            c = self._by_model[model] = Counter()
        c["streams_cancelled"] += 1

    def bill(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """Tokens of an answer sent with status 200 (what the account would be charged)."""
        c = self._by_model[model]
        c["input_tokens"] += input_tokens
        c["output_tokens"] += output_tokens

    def reset(self) -> None:
        self._by_model.clear()

    def snapshot(self) -> Stats:
        total: Counter[str] = Counter()
        for c in self._by_model.values():
            total.update(c)
        return Stats(
            models={m: ModelStats(**c) for m, c in self._by_model.items()},
            totals=ModelStats(**total),
        )
