"""Ray metrics (dashboard / Prometheus) for providers and the router.

Created lazily inside actors; outside a Ray worker every call is a cheap no-op so the
plain cores stay testable without Ray.
"""

from __future__ import annotations

import time
from typing import Any

_LATENCY_BOUNDARIES = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


FLUSH_S = 1.0


class Metrics:
    """The project's metric set; tags always include `provider`.

    Counters are summed locally and pushed once a second: a `ray.util.metrics` call costs
    ~10 µs, and an attempt touches five of them.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._m: dict[str, Any] = {}
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._latencies: dict[str, list[float]] = {}
        self._flushed = time.monotonic()
        if not enabled:
            return
        try:
            import ray
            from ray.util import metrics as m

            if not ray.is_initialized():
                return
        except ImportError:  # pragma: no cover - ray is a hard dependency
            return
        self._m = {
            "requests": m.Counter("llm_router_requests", "Attempts by provider and outcome",
                                  tag_keys=("provider", "outcome")),
            "failures": m.Counter("llm_router_failures", "Failed attempts by error class",
                                  tag_keys=("provider", "error_class")),
            "latency": m.Histogram("llm_router_latency_seconds", "Attempt latency",
                                   boundaries=_LATENCY_BOUNDARIES, tag_keys=("provider",)),
            "breaker": m.Gauge("llm_router_breaker_state", "0 closed, 1 half-open, 2 open",
                               tag_keys=("provider",)),
            "cost": m.Counter("llm_router_cost_usd", "Spend in USD", tag_keys=("provider",)),
            "tokens": m.Counter("llm_router_tokens", "Tokens", tag_keys=("provider", "direction")),
            "budget": m.Gauge("llm_router_budget_used", "Share of a budget used",
                              tag_keys=("provider", "window")),
            "budget_warnings": m.Counter("llm_router_budget_warnings",
                                         "Soft budget limit crossings", tag_keys=("provider",)),
        }

    def _add(self, metric: str, value: float, **tags: str) -> None:
        key = (metric, tuple(sorted(tags.items())))
        self._counts[key] = self._counts.get(key, 0.0) + value

    def attempt(self, provider: str, ok: bool, error_class: str | None, latency_s: float,
                cost_usd: float, input_tokens: int, output_tokens: int) -> None:
        if not self._m:
            return
        self._add("requests", 1, provider=provider, outcome="ok" if ok else "error")
        if not ok:
            self._add("failures", 1, provider=provider, error_class=error_class or "?")
        else:
            self._latencies.setdefault(provider, []).append(latency_s)
        if cost_usd > 0:
            self._add("cost", cost_usd, provider=provider)
        if input_tokens:
            self._add("tokens", input_tokens, provider=provider, direction="input")
        if output_tokens:
            self._add("tokens", output_tokens, provider=provider, direction="output")
        if time.monotonic() - self._flushed >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Push the locally summed values to Ray's metrics agent."""
        self._flushed = time.monotonic()
        if not self._m:
            return
        counts, self._counts = self._counts, {}
        for (metric, tags), value in counts.items():
            self._m[metric].inc(value, dict(tags))
        lats, self._latencies = self._latencies, {}
        for provider, values in lats.items():
            for v in values:
                self._m["latency"].observe(v, {"provider": provider})

    def breaker(self, provider: str, state: str) -> None:
        if self._m:
            self._m["breaker"].set(_BREAKER_VALUE.get(state, -1.0), {"provider": provider})

    def budget(self, scope: str, window: str, used: float) -> None:
        if self._m:
            self._m["budget"].set(used, {"provider": scope, "window": window})

    def budget_warning(self, scope: str) -> None:
        if self._m:
            self._m["budget_warnings"].inc(1, {"provider": scope})
