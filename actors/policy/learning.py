"""What the router has learned about its providers, from the records it produces itself.

Per provider and per (provider, context): decayed estimates of outcome score, success,
latency and output tokens (half-lives in requests of that scope, optionally in seconds);
a shift in a provider's outcomes drops its older evidence (changes.py); a context's score
is its posterior under a prior all contexts share (shared_prior.py), so a provider without
feedback is judged by the prior, on the same footing as the others. The price of quality
(pricing.py) and the best single provider's stream score (stream.py) are kept here too.
Fed only by `observe(record)`, so a replay of the audit trail (a restarted router,
`llm-router evaluate`) builds the same state. Bounded: contexts (least recently used are
folded into the global figures), request ids remembered for feedback, quality targets.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from actors.core.contexts import DEFAULT_KEYS, ContextKey, context_key, label
from actors.core.errors import PROVIDER_FAULT, ErrorClass
from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord
from actors.policy.changes import step
from actors.policy.estimates import Belief, Context, LearningSpec, Memo, Stat
from actors.policy.pricing import QualityPrice, plan
from actors.policy.shared_prior import Prior, fit, flat, initial, posterior, posterior_one
from actors.policy.stream import stream_scores


class Learner:
    """Decayed, shrunk, bounded estimates; not thread-safe (the router's loop owns it)."""

    def __init__(self, providers: Iterable[str], spec: LearningSpec | None = None, *,
                 keys: Iterable[str] = DEFAULT_KEYS, expected_output_tokens: float = 400.0,
                 initial_value: float = 1.0,
                 prices: dict[str, tuple[float, float]] | None = None) -> None:
        """`prices`: USD per 1M input and output tokens per provider (for the price of
        quality, solved over recent traffic)."""
        self.spec = spec or LearningSpec()
        self.keys = tuple(keys)
        self.providers = list(providers)
        self._index = {p: i for i, p in enumerate(self.providers)}
        self.expected_output_tokens = expected_output_tokens
        self.initial_value = initial_value  # USD per unit score before outcomes move it
        self.token_prices = prices or {}
        self._recent: deque[tuple[ContextKey, int]] = deque(maxlen=self.spec.plan_requests)
        self.tick = 0.0  # requests seen
        self.ts = 0.0  # latest record time seen
        self.feedbacks = 0
        self.changes = 0  # shifts noticed (actors/policy/changes.py)
        self._glob = {p: Stat() for p in self.providers}
        self._ctx: OrderedDict[ContextKey, Context] = OrderedDict()
        self._memo: OrderedDict[str, Memo] = OrderedDict()
        self.prices: OrderedDict[float, QualityPrice] = OrderedDict()
        self._ln_ctx = math.log(2.0) / self.spec.stale_half_life_requests
        self._keep = 0.5 ** (1.0 / self.spec.half_life_requests)  # per own newer outcome
        self._ln_glob = math.log(2.0) / self.spec.global_half_life_requests
        self._ln_s = math.log(2.0) / self.spec.half_life_s if self.spec.half_life_s else 0.0
        # Refreshed from all contexts every few feedbacks (empirical Bayes and the best
        # single provider); read by every decision.
        self._prior: Prior = initial(len(self.providers), self.spec.prior_score)
        self._flat = flat(self._prior)
        self._prior_version = 0  # bumped by every refit: what a context's posterior used
        self._center: dict[str, float] = dict.fromkeys(self.providers, self.spec.prior_score)
        self._kappa: dict[str, float] = dict.fromkeys(self.providers, self.spec.context_weight)
        self._stream: dict[str, float] = dict.fromkeys(self.providers, self.spec.prior_score)
        self._stream_se: dict[str, float] = dict.fromkeys(self.providers, 0.5)
        self.best_single: str | None = None
        self._next_refresh = 4
        self.version = 0  # bumped by every record: what a cached reading depends on
        self._global: dict[str, tuple[float, float, float, float]] = {}
        self._global_version = -1

    # -- clocks ---------------------------------------------------------------------------

    def _decay(self, st: Stat, tick: float, ts: float, ln_req: float) -> None:
        dt = tick - st.tick
        ds = ts - st.ts if self._ln_s and ts > st.ts else 0.0
        if dt > 0 or ds > 0:
            st.scale(math.exp(-dt * ln_req - ds * self._ln_s))
        st.tick = tick
        if ts > st.ts:
            st.ts = ts

    def _factor(self, dt: float, ds: float, ln_req: float) -> float:
        return math.exp(-max(dt, 0.0) * ln_req - max(ds, 0.0) * self._ln_s)

    def key(self, context: dict[str, str] | None) -> ContextKey:
        return context_key(context, self.keys)

    def _context(self, key: ContextKey) -> Context:
        ctx = self._ctx.get(key)
        if ctx is None:
            ctx = self._ctx[key] = Context(self.tick)
            while len(self._ctx) > self.spec.max_contexts:
                self._ctx.popitem(last=False)  # folded: its evidence stays in the globals
        else:
            self._ctx.move_to_end(key)
        return ctx

    def _stats(self, provider: str, key: ContextKey) -> tuple[Stat, Stat] | None:
        """(global, context) stats of a provider, decayed to now; None for unknown ones."""
        g = self._glob.get(provider)
        if g is None:
            return None
        self._decay(g, self.tick, self.ts, self._ln_glob)
        ctx = self._context(key)
        st = ctx.stats.get(provider)
        if st is None:
            st = ctx.stats[provider] = Stat(tick=ctx.tick, ts=self.ts)
        self._decay(st, ctx.tick, self.ts, self._ln_ctx)
        return g, st

    # -- feeding --------------------------------------------------------------------------

    def observe(self, rec: Any) -> None:
        """Learn from one record the router produced (other kinds are ignored)."""
        self.version += 1
        if isinstance(rec, AttemptRecord):
            self._attempt(rec)
        elif isinstance(rec, RequestRecord):
            self._request(rec)
        elif isinstance(rec, FeedbackRecord):
            self.feedback(rec.request_id, rec.score, rec.ts)

    def observe_all(self, records: Iterable[Any]) -> None:
        for r in records:
            self.observe(r)

    def _attempt(self, r: AttemptRecord) -> None:
        if r.request_id in self._memo:
            return  # a replayed duplicate of a request already counted
        self.ts = max(self.ts, r.ts)
        stats = self._stats(r.provider, self.key(r.context))
        if stats is None:
            return
        fault = not r.ok and (r.error_class is None or ErrorClass(r.error_class) in PROVIDER_FAULT)
        if not r.ok and not fault:
            return  # the caller's fault or ours (deadline, budget): says nothing of the provider
        stats[1].scale_attempts(self._keep)
        for st in stats:
            st.ok_n += 1.0
            if r.ok:
                st.ok_s += 1.0
                st.lat_n += 1.0
                st.lat_s += r.latency_s
                st.out_n += 1.0
                st.out_s += r.output_tokens

    def _request(self, r: RequestRecord) -> None:
        if r.request_id in self._memo:
            return
        self.ts = max(self.ts, r.ts)
        self.tick += 1.0
        key = self.key(r.context)
        ctx = self._context(key)
        ctx.tick += 1.0
        ctx.traffic = ctx.traffic * self._factor(self.tick - ctx.traffic_tick, 0.0,
                                                 self._ln_glob) + 1.0
        ctx.traffic_tick = self.tick
        if r.provider is None or r.provider not in self._glob or r.cached:
            return  # a cached answer is no new evidence: its feedback would count it twice
        if r.input_tokens > 0:
            self._recent.append((key, r.input_tokens))
        self._memo[r.request_id] = Memo(r.provider, key, r.quality_target)
        while len(self._memo) > self.spec.max_tracked_requests:
            self._memo.popitem(last=False)

    def knows(self, request_id: str) -> bool:
        return request_id in self._memo

    def feedback(self, request_id: str, score: float, ts: float) -> bool:
        """Count a realized outcome; a second one for the same request replaces the first.
        False when the request is not remembered (too old, or not answered)."""
        memo = self._memo.get(request_id)
        if memo is None:
            return False
        self.version += 1
        self.ts = max(self.ts, ts)
        stats = self._stats(memo.provider, memo.key)
        if stats is None:
            return False
        g, st = stats
        ctx = self._ctx[memo.key]
        ctx.post = None  # its evidence changes: the posterior is recomputed when read
        old = memo.score
        if old is None:
            wg = wc = 1.0
            if self.spec.detect_changes and step(st, score):
                self.changes += 1
            st.score_n *= self._keep
            st.score_s *= self._keep
            st.scores += 1
            memo.ctx_tick, memo.tick, memo.ts, memo.nth = ctx.tick, self.tick, self.ts, st.scores
            self.feedbacks += 1
        else:  # replace: the old score's weight now, given to the new one
            ds = self.ts - memo.ts
            wc = self._factor(ctx.tick - memo.ctx_tick, ds, self._ln_ctx) * self._keep ** max(
                st.scores - memo.nth, 0)
            wg = self._factor(self.tick - memo.tick, ds, self._ln_glob)
            st.score_s = max(0.0, st.score_s - wc * old)
            g.score_s = max(0.0, g.score_s - wg * old)
            st.score_n -= wc
            g.score_n -= wg
        st.score_n += wc
        st.score_s += wc * score
        g.score_n += wg
        g.score_s += wg * score
        memo.score = score
        if memo.target is not None:
            price = self.price(memo.target)
            price.age(self.tick, self._ln_glob)
            if old is None:
                price.add(memo.key, memo.provider, self.expected_best(memo.key), score)
            else:
                price.replace(memo.provider, old, score)
        if self.feedbacks >= self._next_refresh:
            self.refresh()
        return True

    # -- the price of quality --------------------------------------------------------------

    def price(self, target: float) -> QualityPrice:
        p = self.prices.get(target)
        if p is None:
            p = self.prices[target] = QualityPrice(
                target, initial=self.initial_value, repay_requests=self.spec.repay_requests,
                max_keys=self.spec.max_contexts)
            p.tick = p.counts_tick = self.tick
            while len(self.prices) > self.spec.max_targets:
                self.prices.popitem(last=False)
        else:
            self.prices.move_to_end(target)
        return p

    def expected_best(self, key: ContextKey) -> float:
        """Expected score in this context of the best single provider over the stream."""
        best = self.best_single
        if best is None:
            return self.spec.prior_score
        return self.belief(best, key).score

    # -- empirical Bayes ------------------------------------------------------------------

    def refresh(self) -> None:
        """Relearn, from all contexts: the prior they share (each provider's level and how
        much contexts differ for it: shared_prior.py), every context's posterior under it,
        and which single provider would do best over the traffic seen (stream.py)."""
        s = self.spec
        self.version += 1
        self._next_refresh = self.feedbacks + (4 if self.feedbacks < 64 else 32)
        keys, ns, xs = [], [], []
        for key, ctx in self._ctx.items():
            n, x = self._evidence(ctx)
            if any(n):
                keys.append(key)
                ns.append(n)
                xs.append(x)
        n, x = np.array(ns), np.array(xs)
        if len(keys) >= 3:
            self._prior = fit(self._prior, n, x)
        else:  # too few contexts to say how they differ: the providers' own levels, each
            # shrunk toward the pooled one
            g = [self._glob[p] for p in self.providers]
            pooled = (sum(st.score_s for st in g) + s.prior_score * s.prior_weight) \
                / (sum(st.score_n for st in g) + s.prior_weight)
            self._prior = Prior(np.array([(st.score_s + pooled * s.prior_weight)
                                          / (st.score_n + s.prior_weight) for st in g]),
                                initial(len(self.providers), s.prior_score).var)
        self._prior_version += 1
        self._flat = flat(self._prior)
        level, spread = self._flat.mean, self._flat.var
        self._center = {p: float(level[i]) for i, p in enumerate(self.providers)}
        self._kappa = {p: float(max(level[i] * (1 - level[i]) / spread[i] - 1.0, 1.0))
                       for i, p in enumerate(self.providers)}
        if keys:
            post = posterior(self._prior, n, x)
            for i, key in enumerate(keys):
                self._ctx[key].post = (post.mean[i].tolist(), post.var[i].tolist(),
                                       self._prior_version)
        traffic = ((ctx.traffic * self._factor(self.tick - ctx.traffic_tick, 0.0, self._ln_glob),
                    key) for key, ctx in self._ctx.items())
        est = stream_scores(((w, self.beliefs(key)) for w, key in traffic if w > 0),
                            self.providers,
                            {p: self._center[p] * (1.0 - self._center[p])
                             / (self._glob[p].score_n + s.prior_weight) for p in self.providers})
        if est is not None:
            self._stream, self._stream_se = est
            # Optimistic: while it is unclear which provider is best, aim at the higher one.
            self.best_single = max(self.providers,
                                   key=lambda p: self._stream[p] + self._stream_se[p])
        if self.prices:
            quality, cost = self._plan()
            best = self.providers.index(self.best_single) if self.best_single else 0
            for price in self.prices.values():
                price.reprice(self.best_single, self.expected_best, self.tick, self._ln_glob)
                price.solve(quality, cost, best, self.spec.optimism * self._stream_se[
                    self.providers[best]], self.spec.target_margin)

    def _plan(self) -> tuple[np.ndarray, np.ndarray]:
        """Expected quality and cost of each recent request at each provider."""
        per_key = {}
        for key, _ in self._recent:
            if key not in per_key:
                per_key[key] = list(self.beliefs(key).values())
        return plan(self._recent, per_key, [self.token_prices.get(p, (0.0, 0.0))
                                            for p in self.providers])

    # -- reading --------------------------------------------------------------------------

    def belief(self, provider: str, key: ContextKey) -> Belief:
        """Posterior of one provider in one context (read-only: clocks are not moved)."""
        return self.beliefs(key, (provider,))[provider]

    def _evidence(self, ctx: Context) -> tuple[list[float], list[float]]:
        """Each provider's decayed outcome count and mean score in one context."""
        n = [0.0] * len(self.providers)
        x = [0.0] * len(self.providers)
        for p, st in ctx.stats.items():
            i = self._index.get(p)
            if i is not None and st.score_n > 0:
                n[i] = st.score_n * self._factor(ctx.tick - st.tick, self.ts - st.ts,
                                                 self._ln_ctx)
                x[i] = st.score_s / st.score_n
        return n, x

    def _posterior(self, ctx: Context) -> tuple[list[float], list[float], int]:
        """The context's posterior (means, variances) under the current prior; recomputed
        only after its evidence or the prior changed."""
        post = ctx.post
        if post is None or post[2] != self._prior_version:
            means, variances = posterior_one(self._flat, *self._evidence(ctx))
            post = ctx.post = (means, variances, self._prior_version)
        return post

    def beliefs(self, key: ContextKey, providers: Iterable[str] | None = None,
                ) -> dict[str, Belief]:
        """Posteriors of the providers in one context, in one pass (the decision path)."""
        s = self.spec
        ctx = self._ctx.get(key)
        if self._global_version != self.version:
            self._global_part()
        part = self._global
        post = self._posterior(ctx) if ctx is not None and ctx.stats else None
        out = {}
        for p in self.providers if providers is None else providers:
            center, kappa, g_ok, g_out = part.get(p) or (s.prior_score, s.context_weight,
                                                         s.prior_success,
                                                         self.expected_output_tokens)
            st = ctx.stats.get(p) if ctx is not None else None
            i = self._index.get(p)
            if post is not None and i is not None:
                score, var = post[0][i], post[1][i]
                weight = max(score * (1.0 - score) / max(var, 1e-9) - 1.0, 0.0)
            else:
                score, weight = center, kappa
            if st is None:
                out[p] = Belief(score, weight, g_ok, g_out, 0.0)
                continue
            fc = self._factor(ctx.tick - st.tick, self.ts - st.ts, self._ln_ctx)
            success = (st.ok_s * fc + g_ok * 10.0) / (st.ok_n * fc + 10.0)
            tokens = (st.out_s * fc + g_out * 3.0) / (st.out_n * fc + 3.0)
            out[p] = Belief(score, weight, success, tokens, st.score_n * fc)
        return out

    def _global_part(self) -> None:
        """Each provider's context-independent part of a belief, until the next record."""
        s = self.spec
        stats = []  # each provider's global sums and their decay factor now
        for p in self.providers:
            g = self._glob[p]
            stats.append((g, self._factor(self.tick - g.tick, self.ts - g.ts, self._ln_glob)))
        # A provider that has not answered yet is expected to write as long as the others
        # do: with the configured default (400 tokens where answers ran ~40) a pricey
        # untried provider looked several times dearer than it is, and a price of quality
        # that would have taken it never tried it (BENCHMARKS.md, routing round 8).
        out_n = sum(g.out_n * fg for g, fg in stats)
        pooled = (sum(g.out_s * fg for g, fg in stats) + self.expected_output_tokens) / (out_n + 1.0)
        part = {}
        for p, (g, fg) in zip(self.providers, stats, strict=True):
            part[p] = (self._center.get(p, s.prior_score), self._kappa.get(p, s.context_weight),
                       (g.ok_s * fg + s.prior_success * 5.0) / (g.ok_n * fg + 5.0),
                       (g.out_s * fg + pooled * 3.0) / (g.out_n * fg + 3.0))
        self._global = part
        self._global_version = self.version

    @property
    def has_feedback(self) -> bool:
        return self.feedbacks > 0

    def table(self) -> list[dict[str, Any]]:
        """Rows for people: the global and every tracked context's estimate per provider."""
        rows = []
        for p in self.providers:
            g = self._glob[p]
            fg = self._factor(self.tick - g.tick, self.ts - g.ts, self._ln_glob)
            rows.append({"provider": p, "context": "*", "score": self._center[p],
                         "evidence": g.score_n * fg, "stream_score": self._stream[p],
                         "context_weight": self._kappa[p]})
        for key, ctx in self._ctx.items():
            for p in ctx.stats:
                b = self.belief(p, key)
                rows.append({"provider": p, "context": label(key), "score": b.score,
                             "evidence": b.evidence, "success": b.success,
                             "output_tokens": b.output_tokens})
        return rows

    def prices_table(self) -> list[dict[str, Any]]:
        return [{"quality_target": t, "value_usd": p.value, "updates": p.updates}
                for t, p in self.prices.items()]
