"""The router: policy over cached snapshots → provider call → fallback → records.

`Router` is plain async Python: provider calls, record sink and stats fetcher are injected,
so it is tested without Ray. `RouterActor` (actors/shells/router_actor.py) wires it to actors.
"""

from __future__ import annotations

import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from actors.clients.base import Completion
from actors.config import Config, ProviderSpec
from actors.core.budget import BudgetLedger, BudgetSpec, BudgetWarning
from actors.core.contexts import configured_keys
from actors.core.cost import cost_usd, worst_case_cost
from actors.core.errors import FALLBACK, ErrorClass, ProviderError
from actors.core.keys import never_mix
from actors.core.params import exclusions, named_only, prompt_tokens, reason, refuse_if_nobody
from actors.core.records import FeedbackRecord
from actors.core.snapshot import Candidate, Need, Snapshot
from actors.policy.estimates import Belief
from actors.policy.explore import ExplorationBudget
from actors.policy.learning import Learner
from actors.policy.policies import POLICIES, PolicySettings, expected_cost, get_policy, rank
from actors.policy.pricing import initial_value
from actors.routing.cache_route import AnsweredHits, CacheProbe, CacheStep
from actors.routing.route import RouteRequest, RouteResult, RoutingError, RoutingTrace
from actors.routing.router_outcomes import CallProvider, RouterOutcomes
from actors.routing.router_spec import RouterSpec
from actors.rpc.messages import ProviderCall
from actors.stores.idempotency import IdempotencyBook, IdempotencyConflict
from actors.stores.response_cache import ResponseCache

#: Policies that learn from outcomes, and so may explore.
LEARNING_POLICIES = frozenset({"accuracy-first", "cost-aware"})
#: Records kept for a rebuild from the audit trail that has not come yet.
MAX_LIVE = 100_000

Sink = Callable[[list[Any]], None]


def prompt_text(req: RouteRequest) -> str:
    return "\n\n".join(f"[{m.role}] {m.content}" for m in req.messages)


class Router(RouterOutcomes):
    """Decides from snapshots it already holds; never asks every provider per request."""

    def __init__(
        self,
        config: Config,
        call_provider: CallProvider,
        sink: Sink,
        *,
        on_warning: Callable[[BudgetWarning], None] | None = None,
    ) -> None:
        self.config = config
        self.spec: RouterSpec = config.router
        if self.spec.default_policy not in POLICIES:
            raise ValueError(f"router.default_policy: unknown policy {self.spec.default_policy!r}")
        self.settings = PolicySettings()
        self.providers: dict[str, ProviderSpec] = {p.name: p for p in config.providers if p.enabled}
        self.snapshot_at: dict[str, float] = {}  # monotonic time of each one's last update
        self.snapshots: dict[str, Snapshot] = {
            name: _initial_snapshot(spec, config.simulated(spec)) for name, spec in self.providers.items()
        }
        self.ledger = BudgetLedger(BudgetSpec.model_validate(config.budgets))
        self._call = call_provider
        self._emit = sink
        self._sink = self._learn_and_emit
        self._on_warning = on_warning
        self.context_keys = configured_keys(config)
        self.learner = self._new_learner()
        self.exploration = ExplorationBudget(self.spec.exploration)
        self.rng = random.Random(self.spec.seed)
        self.clock: Callable[[], float] = time.time  # the exploration budget's clock
        self._live: list[Any] | None = []  # records since start, until `relearn` (bounded)
        self._budgeted = self.ledger.spec.has_limits  # skip per-candidate checks when unlimited
        self.inflight = 0
        self.active: set[str] = set()  # request ids being routed right now
        self.cache: ResponseCache | None = None  # set by the actor (actors/shells/router_state.py)
        self.hit_ids = AnsweredHits(self.spec.learning.max_tracked_requests)
        self.outstanding: dict[str, int] = {}  # calls in flight per provider
        # Set by the actor: request ids as idempotency keys, and text as store_text allows.
        self.idempotency: IdempotencyBook | None = None
        self.keep_text: Callable[[str | None], str | None] = lambda text: text
        # Set by the actor: opens one provider's stream (actors/routing/router_stream.py).
        self.stream_provider: Callable[[str, ProviderCall], Any] | None = None

    # -- state fed from outside ----------------------------------------------------------

    def update_snapshot(self, snap: Snapshot | dict[str, Any]) -> None:
        if isinstance(snap, dict):
            snap = Snapshot.model_validate(snap)
        if snap.name in self.providers:
            self.snapshots[snap.name] = snap
            self.snapshot_at[snap.name] = time.monotonic()

    def stale_snapshots(self, age_s: float) -> list[str]:
        """Providers whose snapshot no reply refreshed in the last `age_s` (idle ones)."""
        now = time.monotonic()
        return [n for n in self.providers if now - self.snapshot_at.get(n, -age_s) >= age_s]

    def set_budgets(self, spec: BudgetSpec) -> None:
        """New limits at run time; spend already booked in the ledger counts against them."""
        self.ledger.spec = spec
        self._budgeted = spec.has_limits

    # -- learning ------------------------------------------------------------------------

    def _new_learner(self) -> Learner:
        typical = [cost_usd(p, 1000, self.spec.expected_output_tokens)
                   for p in self.providers.values()]
        return Learner(self.providers, self.spec.learning, keys=self.context_keys,
                       expected_output_tokens=self.spec.expected_output_tokens,
                       initial_value=initial_value(typical),
                       prices={n: (p.input_cost_per_mtok, p.output_cost_per_mtok)
                               for n, p in self.providers.items()})

    def _learn_and_emit(self, records: list[Any]) -> None:
        """Every record the router produces teaches its learner before it leaves."""
        for r in records:
            self.learner.observe(r)
        if self._live is not None:
            self._live.extend(records)
            if len(self._live) > MAX_LIVE:
                self._live = None  # no rebuild came: the live learner is all there is
        self._emit(records)

    def feedback(self, request_id: str, score: float) -> FeedbackRecord | None:
        """A realized outcome (0..1) of a request this router answered: learned at once and
        recorded (a cache hit: recorded, and ignored by the learner as before). None when
        the request is not remembered (the tracker then checks it)."""
        if not 0.0 <= score <= 1.0:  # also refuses NaN
            raise ValueError(f"feedback score must be within 0..1, got {score}")
        if not self.learner.knows(request_id) and request_id not in self.hit_ids:
            return None
        rec = FeedbackRecord(request_id=request_id, ts=time.time(), score=score)
        self._sink([rec])
        return rec

    def relearn(self, history: Iterable[Any]) -> None:
        """Rebuild the estimates from the audit trail (records written before this router
        started, in time order), then the records seen since it started."""
        fresh = self._new_learner()
        fresh.observe_all(history)
        fresh.observe_all(self._live or [])
        self._live = None
        self.learner = fresh

    # -- the request path ----------------------------------------------------------------

    def _order(self, req: RouteRequest, policy: str, need: Need, now: float,
               trace: RoutingTrace, completion: Completion) -> list[str]:
        for name in [req.provider, *(req.fallbacks or [])]:
            if name is not None and name not in self.providers:
                raise ProviderError(ErrorClass.BAD_REQUEST, f"unknown provider {name!r}; "
                                    f"configured: {', '.join(self.providers)}")
        blocked: dict[str, str] = {}
        if self._budgeted:
            for name, spec in self.providers.items():
                cost = worst_case_cost(spec, need.prompt_tokens,
                                       need.max_tokens or spec.max_output_tokens, req.n)
                reason = self.ledger.blocked_reason(name, cost, now)
                if reason:
                    blocked[name] = reason
        blocked.update(never_mix(self.snapshots.values()))
        blocked.update(self._param_exclusions(req, completion))
        ranked, excluded = self._decide(req, policy, need, trace, blocked)
        trace.candidates = [{"provider": n, "score": round(float(s), 9)} for n, s in ranked]
        trace.excluded = excluded
        if req.provider or req.fallbacks:
            wanted = [n for n in [req.provider, *(req.fallbacks or [])] if n]
            usable = {n for n, _ in ranked}
            return [n for n in dict.fromkeys(wanted) if n in usable]
        return [n for n, _ in ranked]

    def _param_exclusions(self, req: RouteRequest, completion: Completion) -> dict[str, str]:
        """Providers that cannot honour one of the request's parameters, with the reason;
        UnsupportedParameter (a 400) when no provider the request may use can."""
        if not req.has_params:
            return {}
        found = exclusions(self.providers, completion)
        wanted = [n for n in [req.provider, *(req.fallbacks or [])] if n]
        refuse_if_nobody(found, wanted or self.providers)
        return {name: reason(u) for name, u in found.items()}

    def _decide(self, req: RouteRequest, policy: str, need: Need, trace: RoutingTrace,
                blocked: dict[str, str]) -> tuple[list[tuple[str, float]], dict[str, str]]:
        """The policy over this context's posteriors: greedy, or an exploring ranking
        (optimistic or Thompson, actors/policy/explore.py) when it disagrees and the
        exploration budget has room (the trace says which)."""
        learner = self.learner
        key = learner.key(req.context)
        known = learner.beliefs(key)
        beliefs = [(snap, known[name]) for name, snap in self.snapshots.items()]
        learns = policy in LEARNING_POLICIES
        explore = (learns and req.explore and learner.has_feedback
                   and self.exploration.can_explore() and not (req.provider or req.fallbacks))
        if explore:
            spec = self.exploration.spec
            gauss = self.rng.gauss if spec.method == "thompson" else None
            cands = [Candidate.from_snapshot(snap, b, _draw(b, gauss, spec.bonus_sd))
                     for snap, b in beliefs]
        else:
            cands = [Candidate.from_snapshot(snap, b) for snap, b in beliefs]
        for c in cands:  # once per decision, whichever ranking reads it
            c.cost = expected_cost(c, need)
        if policy == "cost-aware":
            value = req.outcome_value_usd if req.outcome_value_usd is not None else (
                None if req.quality_target is not None else self.spec.outcome_value_usd)
            if value is None:
                trace.quality_target = req.quality_target or self.spec.quality_target
                value = learner.price(trace.quality_target).value
            need.value_usd = trace.value_usd = value
        ranked, excluded = rank(policy, cands, need, self.settings, 0.0, blocked)
        if explore and ranked:
            need.sampled = True
            sampled = get_policy(policy)([c for c in cands if c.name not in excluded], need,
                                         self.settings)
            first, greedy = sampled[0][0], ranked[0][0]
            by_name = {c.name: c.cost or 0.0 for c in cands}
            if self.exploration.decide(first != greedy, by_name[first] - by_name[greedy],
                                       self.clock()):
                ranked, trace.explored = sampled, True
        elif learns:
            self.exploration.decide(False, 0.0, 0.0)  # a decision all the same
        return ranked, excluded

    async def route(self, req: RouteRequest) -> RouteResult:
        request_id = req.request_id or uuid.uuid4().hex
        policy = req.policy or self.spec.default_policy
        book = self.idempotency
        if book is None:
            return await self._route(req, request_id, policy)
        try:
            outcome, replayed = await book.run(
                request_id, book.fingerprint(req, policy),
                lambda: self._route(req, request_id, policy),
                req.timeout or self.spec.default_timeout_s,
                fresh=req.new_id)  # an id just made up is in no store
        except (IdempotencyConflict, TimeoutError) as exc:
            cls = ErrorClass.DEADLINE if isinstance(exc, TimeoutError) else exc.error_class
            raise RoutingError(cls, str(exc), RoutingTrace(request_id=request_id, policy=policy,
                                                           context=req.context)) from None
        if replayed:
            outcome = as_replayed(outcome)
        if isinstance(outcome, RoutingError):
            raise outcome
        return outcome

    def route_stream(self, req: RouteRequest) -> Any:
        """The answer as it streams (actors/routing/router_stream.py): StreamStart, the events,
        then the RouteResult."""
        from actors.routing.router_stream import route_stream

        return route_stream(self, req)

    async def _route(self, req: RouteRequest, request_id: str, policy: str) -> RouteResult:
        started = time.time()
        execution = secrets.token_hex(6)
        trace = RoutingTrace(request_id=request_id, policy=policy, context=req.context)
        deadline = started + (req.timeout or self.spec.default_timeout_s)
        records: list[Any] = []
        result: RouteResult | None = None
        error: ProviderError | None = None
        reasons: dict[str, str] = {}
        self.inflight += 1
        self.active.add(request_id)
        try:
            completion = req.completion()
            cache = CacheStep(self, req, policy, completion, request_id, trace)
            probe, order = cache.probe, []
            if cache.result is None:  # else this policy's answer before: no ranking, no budget
                completion, need, order, text = self._plan(req, policy, started, trace, reasons,
                                                           completion)
            async for name in cache.providers(order, deadline, reasons):
                if time.time() >= deadline:
                    reasons[name] = "deadline: request deadline passed before trying it"
                    break
                attempt = self._try(name, req, request_id, policy, completion, deadline, need,
                                    trace, records, text, execution)
                result, reason = await (attempt if probe is None else probe.paid(
                    name, attempt, lambda: trace.simulated))
                if result is not None:
                    break
                reasons[name] = reason or "failed"
                last = trace.attempts[-1] if trace.attempts else None
                if last is not None and last.provider == name and last.error_class:
                    if ErrorClass(last.error_class) not in FALLBACK:
                        error = ProviderError(last.error_class, reason or "failed", provider=name)
                        break
            if result is None:
                result = cache.result
            if result is None and error is None:
                error = cache.give_up(self, reasons)
        except ProviderError as exc:
            error = exc
        finally:
            self.inflight -= 1
            self.active.discard(request_id)
        self._conclude(request_id, policy, req, trace, records, result, error, started)
        return self._outcome(trace, result, error)

    def _plan(self, req: RouteRequest, policy: str, started: float, trace: RoutingTrace,
              reasons: dict[str, str], completion: Completion | None = None,
              ) -> tuple[Completion, Need, list[str], str | None]:
        """Before any provider is called (plain and streamed requests alike): the payload,
        what it needs, the providers in order (exclusions into `reasons`), the prompt text
        to record. Raises ProviderError for a request that cannot be routed at all."""
        if policy not in POLICIES:
            raise ProviderError(ErrorClass.BAD_REQUEST, f"unknown policy {policy!r}; "
                                f"choose one of {', '.join(POLICIES)}")
        completion = completion or req.completion()
        need = Need(prompt_tokens(completion), req.max_tokens, req.context,
                    self.spec.expected_output_tokens, self.outstanding)
        order = self._order(req, policy, need, started, trace, completion)
        reasons.update(named_only(req, trace.excluded))
        text = self.keep_text(prompt_text(req)) if self.spec.store_text else None
        return completion, need, order, text

    def _probe(self, req: RouteRequest, policy: str,
               completion: Completion) -> CacheProbe | None:
        """The request's use of the response cache; None (one comparison) when it has none."""
        if req.cache == "off":
            return None
        if self.cache is None:
            if req.cache == "only":
                raise ProviderError(ErrorClass.CACHE_MISS, "cache 'only' needs the response "
                                    "cache, and this router has none (cache.enabled: false)")
            return None
        return CacheProbe(self.cache, self.providers,
                          lambda name: self.snapshots[name].simulated, req, policy, completion)

def _draw(b: Belief, gauss: Callable[[float, float], float] | None, bonus_sd: float) -> float:
    """The outcome score an exploring ranking uses: the posterior mean plus `bonus_sd`
    standard deviations (no `gauss`), or a Thompson draw, normal with the Beta posterior's
    moments (a Beta draw costs ~10× more, and the tails hardly matter for which wins)."""
    sd = math.sqrt(b.score * (1.0 - b.score) / (b.weight + 1.0))
    if gauss is None:  # capped like a score: past 1, a provider just reset by a detected
        # change would win every exploring ranking on its width alone (drift measured worse)
        return min(1.0, b.score + bonus_sd * sd)
    return min(1.0, max(0.0, gauss(b.score, sd)))


def as_replayed(outcome: RouteResult | RoutingError) -> RouteResult | RoutingError:
    """A stored outcome handed out again, marked as such (the stored one stays as it was)."""
    trace = outcome.trace.model_copy(update={"replayed": True})
    if isinstance(outcome, RoutingError):
        return RoutingError(outcome.error_class, outcome.message, trace, outcome.param)
    return outcome.model_copy(update={"trace": trace})


def _initial_snapshot(spec: ProviderSpec, simulated: bool) -> Snapshot:
    return Snapshot(
        name=spec.name, model=spec.model, api=spec.api,
        input_cost_per_mtok=spec.input_cost_per_mtok, output_cost_per_mtok=spec.output_cost_per_mtok,
        max_input_tokens=spec.max_input_tokens, max_output_tokens=spec.max_output_tokens,
        max_concurrency=spec.max_concurrency, rpm=spec.rpm, tpm=spec.tpm, simulated=simulated,
    )
