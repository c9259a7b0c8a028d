"""Request-level metrics of the router: who asked, which policy chose what, what came of it,
what it cost, and where the time went (in the router vs at providers).

Label values are bounded, so Prometheus' series count stays bounded however many requests
and users come: policies outside the known set are `other`; the end user is its own value
only when allow-listed (`metrics.users`) or among the `metrics.top_users` busiest seen by
this router (Space-Saving heavy hitters), else `other`; requests without one are `none`.
No request ids or free-form text ever become labels.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from typing import Any

from actors.routing.route import RouteRequest, RouteResult, RoutingError
from actors.shells.metrics import Metrics, MetricsSpec

OTHER, NONE = "other", "none"
_clock = time.perf_counter
_AT_PROVIDER: ContextVar[list[float] | None] = ContextVar("llm_router_at_provider", default=None)


class TopUsers:
    """The busiest keys of a stream, in `capacity` counters: when they are full, the half
    with the smallest counts is dropped at once (one sort per capacity/2 new keys, not a
    scan per key), so a long tail of rare users costs little and the busy ones keep their
    counts."""

    def __init__(self, n: int, capacity: int | None = None, refresh_every: int = 64) -> None:
        self.n = n
        self.capacity = max(capacity or 8 * n, n)
        self._counts: dict[str, int] = {}
        self._top: frozenset[str] = frozenset()
        self._refresh_every = refresh_every
        self._since = 0

    def add(self, key: str) -> None:
        if self.n == 0:
            return
        c = self._counts
        if key in c:
            c[key] += 1
        else:
            if len(c) >= self.capacity:
                keep = sorted(c, key=c.__getitem__, reverse=True)[:self.capacity // 2]
                self._counts = c = {k: c[k] for k in keep}
            c[key] = 1
        self._since += 1
        if self._since >= self._refresh_every or len(self._top) < min(self.n, len(c)):
            self._refresh()

    def _refresh(self) -> None:
        self._since = 0
        self._top = frozenset(sorted(self._counts, key=self._counts.__getitem__,
                                     reverse=True)[:self.n])

    def __contains__(self, key: str) -> bool:
        return key in self._top


class UserLabels:
    """End user → label value: allow-listed, else one of the busiest, else `other`."""

    def __init__(self, spec: MetricsSpec) -> None:
        self._allowed = frozenset(spec.users)
        self._top = TopUsers(spec.top_users)
        self._labelled: set[str] = set()
        self._cap = spec.max_user_labels

    def label(self, user: str | None) -> str:
        if not user:
            return NONE
        if user in self._allowed:
            return user
        self._top.add(user)
        if user in self._labelled:
            return user
        if user in self._top and len(self._labelled) < self._cap:
            self._labelled.add(user)
            return user
        return OTHER


class at_provider:  # noqa: N801 - used like a function: `with at_provider(): ...`
    """Count the enclosed wait as time at a provider for the request being routed in this
    task (or the task that spawned it). A class, not @contextmanager: half the cost."""

    __slots__ = ("_acc", "_t0")

    def __enter__(self) -> None:
        self._acc = _AT_PROVIDER.get()
        self._t0 = _clock()

    def __exit__(self, *exc: object) -> None:
        if self._acc is not None:
            self._acc[0] += _clock() - self._t0


class RequestObserver:
    """Wraps the router's `route` and reports each request it answered or refused: the
    same requests the audit trail gets a request row for."""

    def __init__(self, spec: MetricsSpec, metrics: Metrics, policies: Collection[str]) -> None:
        self._metrics = metrics
        self._policies = frozenset(policies)
        self._users = UserLabels(spec)
        self._series: dict[tuple[str, str, str, str], tuple] = {}

    async def route(self, req: RouteRequest,
                    route: Callable[[RouteRequest], Awaitable[RouteResult]]) -> RouteResult:
        if not self._metrics.enabled:
            return await route(req)
        acc = [0.0]
        token = _AT_PROVIDER.set(acc)
        t0 = _clock()
        try:
            result = await route(req)
        except RoutingError as exc:
            self.observe(req, exc.trace, exc.error_class.value, _clock() - t0, acc[0])
            raise
        finally:
            _AT_PROVIDER.reset(token)
        self.observe(req, result.trace, "ok", _clock() - t0, acc[0])
        return result

    def observe(self, req: RouteRequest, trace: Any, outcome: str, total_s: float,
                provider_s: float) -> None:
        labels = (trace.policy if trace.policy in self._policies else OTHER,
                  trace.chosen or NONE, outcome, self._users.label(req.user))
        s = self._series.get(labels)
        if s is None:  # labels are bounded, so this cache is too
            s = self._series[labels] = self._make_series(*labels)
        m = self._metrics
        m.add_to(s[0], 1)
        if trace.cost_usd > 0:
            m.add_to(s[1], trace.cost_usd)
        m.add_to(s[2], max(0.0, total_s - provider_s))
        if provider_s > 0:
            m.add_to(s[3], provider_s)
        if trace.explored:
            m.add_to(s[4], 1)
        if trace.cached:
            m.add_to(s[5], 1)
            if trace.saved_usd > 0:
                m.add_to(s[6], trace.saved_usd)

    @staticmethod
    def _make_series(policy: str, provider: str, outcome: str, user: str) -> tuple:
        series = Metrics.series
        return (series("requests", policy=policy, provider=provider, outcome=outcome, user=user),
                series("request_cost", policy=policy, provider=provider, user=user),
                series("request_time", policy=policy, part="router"),
                series("request_time", policy=policy, part="provider"),
                series("explored", policy=policy, provider=provider),
                series("cache_hits", policy=policy, provider=provider),
                series("cache_saved", provider=provider))
