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
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from actors.metrics import Metrics, MetricsSpec
from actors.route import RouteRequest, RouteResult, RoutingError

OTHER, NONE = "other", "none"
_clock = time.perf_counter
_AT_PROVIDER: ContextVar[list[float] | None] = ContextVar("llm_router_at_provider", default=None)


class TopUsers:
    """The busiest keys of a stream (Space-Saving: `capacity` counters, a new key evicts
    the smallest and inherits its count, so heavy hitters are never missed)."""

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
        elif len(c) < self.capacity:
            c[key] = 1
        else:
            smallest = min(c, key=c.__getitem__)
            c[key] = c.pop(smallest) + 1
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


@contextmanager
def at_provider() -> Iterator[None]:
    """Count the enclosed wait as time at a provider for the request being routed in this
    task (or the task that spawned it)."""
    acc = _AT_PROVIDER.get()
    t0 = _clock()
    try:
        yield
    finally:
        if acc is not None:
            acc[0] += _clock() - t0


class RequestObserver:
    """Wraps the router's `route` and reports each request it answered or refused: the
    same requests the audit trail gets a request row for."""

    def __init__(self, spec: MetricsSpec, metrics: Metrics, policies: Collection[str]) -> None:
        self._metrics = metrics
        self._policies = frozenset(policies)
        self._users = UserLabels(spec)

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
        policy = trace.policy if trace.policy in self._policies else OTHER
        provider = trace.chosen or NONE
        user = self._users.label(req.user)
        m = self._metrics
        m.add("requests", 1, policy=policy, provider=provider, outcome=outcome, user=user)
        if trace.cost_usd > 0:
            m.add("request_cost", trace.cost_usd, policy=policy, provider=provider, user=user)
        m.add("request_time", max(0.0, total_s - provider_s), policy=policy, part="router")
        if provider_s > 0:
            m.add("request_time", provider_s, policy=policy, part="provider")
        if getattr(trace, "explored", False):  # traces that carry the exploration flag
            m.add("explored", 1, policy=policy, provider=provider)
