"""Per-provider and per-(provider, context) performance, aggregated from records in memory.

Policies want context-specific figures ("how does claude do on 1h bull-market analysis?")
but only once there are enough of them; before that the provider's global figures are the
better estimate. `stats_for` makes that switch and says which it used. These are lifetime
figures for reports; what the router decides by is learned in the router itself
(actors/policy/learning.py). Contexts are keyed by `actors.core.contexts` and bounded in number.

Everything here is derived from the audit trail, so `rebuild_from(store)` gives a
restarted tracker exactly the figures it had.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from actors.core.contexts import DEFAULT_KEYS, GLOBAL, ContextKey, context_key, label
from actors.core.errors import PROVIDER_FAULT
from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord

if TYPE_CHECKING:
    from actors.stores.audit_base import AuditBackend, Written


@dataclass(slots=True)
class _Agg:
    window: int
    attempts: int = 0
    ok: int = 0
    faults: int = 0  # failures that are the provider's fault (the rest are excluded)
    latencies: deque[float] = field(init=False)  # recent ok-attempt latencies
    latency_sum: float = 0.0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    score_sum: float = 0.0
    score_n: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: dict[str, Any] | None = None  # stats() until the next change

    def __post_init__(self) -> None:
        self.latencies = deque(maxlen=self.window)

    @property
    def samples(self) -> int:
        return self.ok + self.faults

    def stats(self) -> dict[str, Any]:
        """Cached, because the router asks far more often than records arrive."""
        if self.cached is None:
            self.cached = self._stats()
        return dict(self.cached)

    def _stats(self) -> dict[str, Any]:
        p50 = p95 = None
        if self.latencies:
            lat = np.fromiter(self.latencies, float, len(self.latencies))
            p50, p95 = (float(x) for x in np.percentile(lat, [50, 95]))
        tokens = self.input_tokens + self.output_tokens
        return {
            "samples": self.samples,
            "attempts": self.attempts,
            "success_rate": self.ok / self.samples if self.samples else None,
            "mean_latency_s": self.latency_sum / self.ok if self.ok else None,
            "p50_s": p50,
            "p95_s": p95,
            "mean_confidence": (
                self.confidence_sum / self.confidence_n if self.confidence_n else None
            ),
            "mean_score": self.score_sum / self.score_n if self.score_n else None,
            "score_samples": self.score_n,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "cost_per_1k_tokens": self.cost_usd / tokens * 1000 if tokens else None,
        }


class Performance:
    """Aggregates keyed by (provider, context key); not thread-safe (one owner feeds it)."""

    def __init__(
        self,
        *,
        min_context_samples: int = 20,
        window_size: int = 500,
        context_keys: Iterable[str] = DEFAULT_KEYS,
        max_tracked_requests: int = 100_000,
        max_contexts: int = 2000,
    ) -> None:
        """`window_size` bounds the latency sample per key (p50/p95 are over recent
        attempts); `max_tracked_requests` bounds the request → provider map feedback uses;
        `max_contexts` the contexts aggregated (least recently used are dropped: their
        records stay in the global figures and the audit trail)."""
        self.min_context_samples = min_context_samples
        self.window_size = window_size
        self.context_keys = tuple(context_keys)
        self.max_tracked_requests = max_tracked_requests
        self.max_contexts = max_contexts
        self._aggs: dict[tuple[str, ContextKey], _Agg] = {}
        self._contexts: OrderedDict[ContextKey, set[str]] = OrderedDict()  # LRU → providers
        self._owners: OrderedDict[str, tuple[str, ContextKey]] = OrderedDict()

    def key(self, context: Mapping[str, Any] | None) -> ContextKey:
        return context_key(context, self.context_keys)

    def _targets(self, provider: str, ctx: ContextKey) -> list[_Agg]:
        if ctx:
            seen = self._contexts.get(ctx)
            if seen is None:
                seen = self._contexts[ctx] = set()
                while len(self._contexts) > self.max_contexts:
                    old, names = self._contexts.popitem(last=False)
                    for n in names:
                        self._aggs.pop((n, old), None)
            else:
                self._contexts.move_to_end(ctx)
            seen.add(provider)
        keys = [(provider, GLOBAL)] + ([(provider, ctx)] if ctx else [])
        out = []
        for k in keys:
            agg = self._aggs.get(k)
            if agg is None:
                agg = self._aggs[k] = _Agg(self.window_size)
            agg.cached = None  # every caller is about to change it
            out.append(agg)
        return out

    # -- feeding ------------------------------------------------------------------------

    def add(self, rec: AttemptRecord | RequestRecord) -> None:
        if isinstance(rec, AttemptRecord):
            self._add_attempt(rec)
        else:
            self._add_request(rec)

    def _add_attempt(self, r: AttemptRecord) -> None:
        fault = not r.ok and (r.error_class is None or r.error_class in PROVIDER_FAULT)
        for a in self._targets(r.provider, self.key(r.context)):
            a.attempts += 1
            a.input_tokens += r.input_tokens
            a.output_tokens += r.output_tokens
            a.cost_usd += r.cost_usd
            if r.ok:
                a.ok += 1
                a.latency_sum += r.latency_s
                a.latencies.append(r.latency_s)
                if r.confidence is not None:
                    a.confidence_sum += r.confidence
                    a.confidence_n += 1
            elif fault:
                a.faults += 1

    def _add_request(self, r: RequestRecord) -> None:
        if r.provider is None:
            return  # nobody answered: nothing to credit, nothing feedback could score
        ctx = self.key(r.context)
        for a in self._targets(r.provider, ctx):
            a.requests += 1
        self.remember(r.request_id, r.provider, ctx)

    def remember(self, request_id: str, provider: str, ctx: ContextKey) -> None:
        """Note who answered a request, so its feedback lands on the right aggregates."""
        self._owners[request_id] = (provider, ctx)
        self._owners.move_to_end(request_id)
        while len(self._owners) > self.max_tracked_requests:
            self._owners.popitem(last=False)

    def owner(self, request_id: str) -> tuple[str, ContextKey] | None:
        """(provider, context key) of a recent request; None if unknown or evicted."""
        return self._owners.get(request_id)

    def add_feedback(
        self,
        rec: FeedbackRecord,
        previous: float | None = None,
        owner: tuple[str, ContextKey] | None = None,
    ) -> bool:
        """Count a realized score (replacing `previous` if the request was scored before).

        `owner` is for requests older than the in-memory map (the caller looks them up in
        the audit trail). Returns False when the request's provider is unknown.
        """
        owner = owner or self.owner(rec.request_id)
        if owner is None:
            return False
        for a in self._targets(*owner):
            if previous is None:
                a.score_n += 1
                a.score_sum += rec.score
            else:
                a.score_sum += rec.score - previous
        return True

    def apply(self, written: Written, lookup: AuditBackend | None = None) -> None:
        """Feed what one committed batch changed; `lookup` resolves evicted request ids."""
        for r in written.attempts:
            self._add_attempt(r)
        for q in written.requests:
            self._add_request(q)
        for f, previous in written.feedback:
            self.add_feedback(f, previous, self._owner_from(f.request_id, lookup))

    def _owner_from(self, request_id: str, store: AuditBackend | None,
                    ) -> tuple[str, ContextKey] | None:
        owner = self.owner(request_id)
        if owner is None and store is not None:
            row = store.request(request_id)
            if row and row["provider"]:
                owner = (row["provider"], self.key(row["context"]))
        return owner

    def rebuild_from(self, store: AuditBackend) -> None:
        """Start over from the audit trail (a restarted tracker has the same figures)."""
        self._aggs.clear()
        self._contexts.clear()
        self._owners.clear()
        for r in store.iter_records():
            if isinstance(r, FeedbackRecord):
                self.add_feedback(r, None, self._owner_from(r.request_id, store))
            else:
                self.add(r)

    # -- answers ------------------------------------------------------------------------

    @property
    def providers(self) -> list[str]:
        return sorted({p for p, _ in self._aggs})

    def stats_for(self, provider: str, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Context-specific figures once that context has `min_context_samples`, else global."""
        ctx = self.key(context)
        agg = self._aggs.get((provider, ctx)) if ctx else None
        source = "context"
        if agg is None or agg.samples < self.min_context_samples:
            agg, source = self._aggs.get((provider, GLOBAL)), "global"
        out = (agg or _Agg(1)).stats()
        out.update(provider=provider, source=source,
                   context=label(ctx) if source == "context" else label(GLOBAL))
        return out

    def table(self, by_context: bool = False) -> pd.DataFrame:
        """One row per provider (context "*"), plus one per seen context if `by_context`."""
        rows = []
        for (provider, ctx), agg in sorted(self._aggs.items(), key=lambda kv: (kv[0][0],
                                                                                label(kv[0][1]))):
            if ctx and not by_context:
                continue
            rows.append({"provider": provider, "context": label(ctx), **agg.stats()})
        cols = ["provider", "context", *_Agg(1).stats()]
        return pd.DataFrame(rows, columns=cols).set_index(["provider", "context"])
