"""How one routed request uses the response cache (actors/stores/response_cache.py).

The router asks a `CacheProbe` three things, in this order: did this policy get an answer
for this request before (`remembered`: replayed whichever provider gave it, before any
budget check — a hit reserves nothing); does the provider the policy chose now (or a
fallback, in turn) have one (`hit`); and, after a paid answer, `keep` it. A hit takes no
rate-limit capacity, reserves no budget and calls no provider: the request's record says
`cached` with cost 0 and the original cost in `saved_usd`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from actors.clients.base import Completion
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError
from actors.routing.route import RouteRequest, RouteResult, RoutingTrace
from actors.stores.response_cache import (
    READS,
    WRITES,
    CachedAnswer,
    ResponseCache,
    answer_key,
    choice_key,
)

if TYPE_CHECKING:
    from actors.routing.router import Router

Tried = tuple[RouteResult | None, str | None]


@dataclass
class CacheProbe:
    """One request's view of the cache; keys are computed once, lazily per provider."""

    cache: ResponseCache
    providers: dict[str, ProviderSpec]
    simulated: Callable[[str], bool]
    req: RouteRequest
    policy: str
    completion: Completion

    def __post_init__(self) -> None:
        self.reads = self.req.cache in READS
        self.writes = self.req.cache in WRITES
        self.only = self.req.cache == "only"
        self._keys: dict[str, str] = {}
        self._choice: str | None = None

    def key(self, name: str) -> str:
        k = self._keys.get(name)
        if k is None:
            k = self._keys[name] = answer_key(self.cache.key, self.providers[name],
                                              self.simulated(name), self.completion,
                                              self.req.output)
        return k

    @property
    def choice(self) -> str:
        if self._choice is None:
            self._choice = choice_key(self.cache.key, self.policy, self.req.context,
                                      self.completion, self.req.output)
        return self._choice

    def remembered(self) -> CachedAnswer | None:
        """The answer this policy got for this request before, from a provider still
        configured (and among the pinned ones, when the request pins providers)."""
        if not self.reads:
            return None
        k = self.cache.chosen(self.choice)
        hit = self.cache.get(k) if k is not None else None
        if hit is None or hit.provider not in self.providers:
            return None
        pinned = [n for n in [self.req.provider, *(self.req.fallbacks or [])] if n]
        if pinned and hit.provider not in pinned:
            return None
        if self.key(hit.provider) != k:  # the provider's settings changed since
            return None
        self.cache.noted(hit)
        return hit

    async def hit(self, name: str, deadline: float) -> CachedAnswer | None:
        """The cached answer of `name`; when the same question is being paid for right now
        (another policy's request for the same bar), its answer is waited for, not bought
        twice."""
        if not self.reads:
            return None
        key = self.key(name)
        pending = self.cache.inflight.get(key)
        if pending is not None:
            try:
                await asyncio.wait_for(asyncio.shield(pending), max(0.0, deadline - time.time()))
            except TimeoutError:
                pass
        hit = self.cache.get(key)
        self.cache.noted(hit)
        if hit is not None and self.writes:  # this policy's choice, for a re-run to replay
            self.cache.put(key, self.choice, hit)
        return hit

    async def answer(self, name: str, deadline: float,
                     reasons: dict[str, str]) -> CachedAnswer | None:
        """`hit`, for the router's loop over providers (synchronous and batch alike): with
        cache 'only' a miss goes into `reasons`, and the caller calls no provider."""
        hit = await self.hit(name, deadline)
        if hit is None and self.only:
            reasons[name] = "cache_miss: no cached answer (cache: only)"
        return hit

    async def paid(self, name: str, attempt: Awaitable[Tried],
                   simulated: Callable[[], bool]) -> Tried:
        """Run the provider attempt for `name`, marked in flight for others asking the
        same, and keep its answer."""
        key = self.key(name)
        mine = None
        if self.writes and key not in self.cache.inflight:
            mine = self.cache.inflight[key] = asyncio.get_running_loop().create_future()
        try:
            result, reason = await attempt
            if result is not None:
                self.keep(result, simulated())
            return result, reason
        finally:
            if mine is not None:
                del self.cache.inflight[key]
                mine.set_result(None)

    def keep(self, r: RouteResult, simulated: bool) -> None:
        """Keep a paid answer for this provider and this policy's choice."""
        if not self.writes or r.trace.cached:
            return
        self.cache.put(self.key(r.provider), self.choice, CachedAnswer(
            provider=r.provider, model=r.model, text=r.text, finish_reason=r.finish_reason,
            input_tokens=r.input_tokens, output_tokens=r.output_tokens, cost_usd=r.cost_usd,
            parsed=r.parsed, simulated=simulated))


class AnsweredHits:
    """Request ids this router answered from the cache, most recent `size` of them.

    The learner keeps no memo of a hit (no new evidence), so without this a hit's feedback
    went to the tracker: one Ray call, an audit-trail lookup and a commit each, retried
    while the request's own rows were still on their way — the whole cost of a backtest
    re-run. The router recorded the hit itself, so it records the feedback after it,
    through the same journal and batches; the learner ignores it as before."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, request_id: str) -> None:
        self._ids[request_id] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids


class CacheStep:
    """The cache's part of one routed request, the same for a plain, a streamed and a
    batched one: the remembered answer before any ranking (`open`), a hit in the policy's
    order before each provider is paid (`providers`), and why nobody answered (`give_up`).
    `result` is the cached answer when there is one; `probe` is None when the request does
    not use the cache."""

    __slots__ = ("probe", "request_id", "trace", "result")

    def __init__(self, router: Router, req: RouteRequest, policy: str, completion: Completion,
                 request_id: str, trace: RoutingTrace) -> None:
        self.probe = router._probe(req, policy, completion)
        self.request_id, self.trace = request_id, trace
        hit = self.probe.remembered() if self.probe is not None else None
        self.result = hit_result(request_id, hit, trace) if hit is not None else None

    async def providers(self, order: Iterable[str], deadline: float,
                        reasons: dict[str, str]) -> AsyncIterator[str]:
        """The providers to call, in the policy's order: a cached answer of one ends the
        walk (into `result`); with cache 'only' none is called (misses into `reasons`)."""
        probe = self.probe
        for name in order:
            if probe is not None:
                if (hit := await probe.answer(name, deadline, reasons)) is not None:
                    self.result = hit_result(self.request_id, hit, self.trace)
                    return
                if probe.only:
                    continue
            yield name

    def give_up(self, router: Router, reasons: dict[str, str]) -> ProviderError:
        """Nobody answered: a cache-only miss, or the router's reasons."""
        if self.probe is not None and self.probe.only:
            return only_miss()
        return router._give_up(reasons, self.trace)


def only_miss() -> ProviderError:
    """Cache 'only' and no provider had an answer."""
    return ProviderError(ErrorClass.CACHE_MISS, "no cached answer for this request, and "
                         "cache 'only' calls no provider")


def hit_result(request_id: str, hit: CachedAnswer, trace: RoutingTrace) -> RouteResult:
    """The result of a cache hit: nothing used, nothing paid, the saved cost on the trace."""
    trace.chosen = hit.provider
    trace.cached = True
    trace.saved_usd = hit.cost_usd
    trace.simulated = trace.simulated or hit.simulated
    return RouteResult(request_id=request_id, provider=hit.provider, model=hit.model,
                       text=hit.text, finish_reason=hit.finish_reason, input_tokens=0,
                       output_tokens=0, cost_usd=0.0, latency_s=0.0, parsed=hit.parsed,
                       trace=trace)
