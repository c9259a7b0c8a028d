"""Ray metrics (dashboard / Prometheus) for providers and the router.

`METRICS` is the one list of what the project exports: the README table, the Grafana
dashboard test and the Prometheus names all come from it. Ray exports every metric with a
`ray_` prefix, counters with a `_total` suffix and histograms as `_bucket`/`_count`/`_sum`
(`prometheus_names`).

`Metrics` sums values locally and pushes them to Ray at most once per `FLUSH_S`: a
`ray.util.metrics` call is not free (BENCHMARKS.md, "Costs quoted in the code") and a
request touches several. The push is a timer
armed by the first value after a flush, so the last values of a burst reach Prometheus
within `FLUSH_S` even when nothing follows them. Outside a Ray worker every call is a
cheap no-op, so the plain cores stay testable without Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FLUSH_S = 1.0
#: What Ray puts in front of every application metric name it exports to Prometheus.
PROMETHEUS_PREFIX = "ray_"
LATENCY_BOUNDARIES = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
Kind = Literal["counter", "gauge", "histogram"]


class MetricsSpec(BaseModel):
    """The `metrics:` config section: how end users become label values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: tuple[str, ...] = Field(
        (), description="End users that always get their own `user` label value.")
    top_users: int = Field(
        10, ge=0, le=1000, description="The N busiest other users get their own value too; "
        "0 = only the allow-listed ones.")
    max_user_labels: int = Field(
        50, ge=0, le=10000, description="Cap on distinct users ever labelled by one router "
        "process (besides the allow-list), so churn among the busiest stays bounded.")


@dataclass(frozen=True)
class MetricDef:
    """One exported metric: its name as given to Ray, kind, help text and tag keys."""

    key: str
    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    def prometheus_names(self) -> tuple[str, ...]:
        """The series names Prometheus shows for it (Ray's prefix, the kind's suffixes)."""
        base = PROMETHEUS_PREFIX + self.name
        if self.kind == "counter":
            return (base + "_total",)
        if self.kind == "histogram":
            return (base + "_bucket", base + "_count", base + "_sum")
        return (base,)


METRICS: tuple[MetricDef, ...] = (
    # attempt level: one HTTP call to one provider (provider actors)
    MetricDef("attempts", "llm_router_attempts", "counter",
              "Attempts (HTTP calls) by provider and outcome (ok, error)",
              ("provider", "outcome")),
    MetricDef("failures", "llm_router_failures", "counter",
              "Failed attempts by provider and error class", ("provider", "error_class")),
    MetricDef("latency", "llm_router_latency_seconds", "histogram",
              "Latency of successful attempts", ("provider",), LATENCY_BOUNDARIES),
    MetricDef("cost", "llm_router_cost_usd", "counter", "Spend in USD by provider",
              ("provider",)),
    MetricDef("tokens", "llm_router_tokens", "counter",
              "Tokens by provider and direction (input, output)", ("provider", "direction")),
    MetricDef("breaker", "llm_router_breaker_state", "gauge",
              "Circuit breaker: 0 closed, 1 half-open, 2 open", ("provider",)),
    # request level: what a caller asked, however many attempts it took (router actor)
    MetricDef("requests", "llm_router_requests", "counter",
              "Routed requests by policy, chosen provider (none if no answer), outcome "
              "(ok or the error class) and end user (allow-listed or busiest, else other)",
              ("policy", "provider", "outcome", "user")),
    MetricDef("request_cost", "llm_router_request_cost_usd", "counter",
              "Spend of routed requests in USD by policy, chosen provider and end user",
              ("policy", "provider", "user")),
    MetricDef("request_time", "llm_router_request_seconds", "counter",
              "Seconds routed requests spent in the router (policy, budgets, records) and "
              "at providers (the calls to provider actors), by policy", ("policy", "part")),
    MetricDef("explored", "llm_router_explored", "counter",
              "Requests whose provider was an exploratory choice, by policy and provider",
              ("policy", "provider")),
    MetricDef("cache_hits", "llm_router_cache_hits", "counter",
              "Requests answered from the response cache (no provider called), by policy "
              "and provider", ("policy", "provider")),
    MetricDef("cache_saved", "llm_router_cache_saved_usd", "counter",
              "USD the cached answers originally cost (not paid again), by provider",
              ("provider",)),
    MetricDef("budget", "llm_router_budget_used", "gauge",
              "Share of a budget used (scope * = global)", ("provider", "window")),
    MetricDef("budget_warnings", "llm_router_budget_warnings", "counter",
              "Soft budget limit crossings", ("provider",)),
)
BY_KEY = {m.key: m for m in METRICS}


def exported_names() -> set[str]:
    """Every series name Prometheus can show for this project's metrics."""
    return {n for m in METRICS for n in m.prometheus_names()}


def _ray_backend(defn: MetricDef) -> Any:
    from ray.util import metrics as m

    if defn.kind == "counter":
        return m.Counter(defn.name, defn.description, tag_keys=defn.tags)
    if defn.kind == "gauge":
        return m.Gauge(defn.name, defn.description, tag_keys=defn.tags)
    return m.Histogram(defn.name, defn.description, boundaries=list(defn.boundaries),
                       tag_keys=defn.tags)


def _ray_worker() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:  # pragma: no cover - ray is a hard dependency
        return False


Tags = tuple[tuple[str, str], ...]


class Metrics:
    """The project's metric set. `make` builds one metric object from its definition
    (Ray's by default); tests pass a recorder."""

    def __init__(self, enabled: bool = True,
                 make: Callable[[MetricDef], Any] | None = None) -> None:
        self._m: dict[str, Any] = {}
        self._counts: dict[tuple[str, Tags], float] = {}
        self._observed: dict[tuple[str, Tags], list[float]] = {}
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # where the push is armed
        if not enabled or (make is None and not _ray_worker()):
            return
        make = make or _ray_backend
        self._m = {d.key: make(d) for d in METRICS}

    @property
    def enabled(self) -> bool:
        return bool(self._m)

    # -- summed locally, pushed by the timer ----------------------------------------------

    @staticmethod
    def series(key: str, **tags: str) -> tuple[str, Tags]:
        """One counter series, for `add_to` (callers on a hot path keep these). Tags keep
        their call-site order: the same for every call from one place, and no sort."""
        return (key, tuple(tags.items()))

    def add(self, key: str, value: float, **tags: str) -> None:
        """Add to a counter; reaches Ray within FLUSH_S."""
        self.add_to((key, tuple(tags.items())), value)

    def add_to(self, series: tuple[str, Tags], value: float) -> None:
        if not self._m:
            return
        self._counts[series] = self._counts.get(series, 0.0) + value
        if self._timer_loop is None or self._timer_loop.is_closed():
            self._arm()

    def observe(self, key: str, value: float, **tags: str) -> None:
        """Record a histogram value; reaches Ray within FLUSH_S."""
        if not self._m:
            return
        self._observed.setdefault((key, tuple(tags.items())), []).append(value)
        if self._timer_loop is None or self._timer_loop.is_closed():
            self._arm()

    def _arm(self) -> None:
        """One push FLUSH_S from now, on this thread's loop (a timer armed on a loop that
        has closed since never fires, so that one is replaced)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop here: nothing would fire a timer, push now
            self.flush()
            return
        self._timer_loop = loop
        loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Push the locally summed values to Ray's metrics agent."""
        self._timer_loop = None
        if not self._m:
            return
        counts, self._counts = self._counts, {}
        for (key, tags), value in counts.items():
            self._m[key].inc(value, dict(tags))
        observed, self._observed = self._observed, {}
        for (key, tags), values in observed.items():
            t = dict(tags)
            for v in values:
                self._m[key].observe(v, t)

    # -- gauges: set at once (they change rarely) ------------------------------------------

    def set(self, key: str, value: float, **tags: str) -> None:
        if self._m:
            self._m[key].set(value, tags)

    # -- what the actors report -------------------------------------------------------------

    def attempt(self, provider: str, ok: bool, error_class: str | None, latency_s: float,
                cost_usd: float, input_tokens: int, output_tokens: int) -> None:
        if not self._m:
            return
        self.add("attempts", 1, provider=provider, outcome="ok" if ok else "error")
        if not ok:
            self.add("failures", 1, provider=provider, error_class=error_class or "?")
        else:
            self.observe("latency", latency_s, provider=provider)
        if cost_usd > 0:
            self.add("cost", cost_usd, provider=provider)
        if input_tokens:
            self.add("tokens", input_tokens, provider=provider, direction="input")
        if output_tokens:
            self.add("tokens", output_tokens, provider=provider, direction="output")

    def breaker(self, provider: str, state: str) -> None:
        self.set("breaker", BREAKER_VALUE.get(state, -1.0), provider=provider)

    def budget(self, scope: str, window: str, used: float) -> None:
        self.set("budget", used, provider=scope, window=window)

    def budget_warning(self, scope: str) -> None:
        self.add("budget_warnings", 1, provider=scope)
