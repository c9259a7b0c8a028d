"""The router: policy over cached snapshots → provider call → fallback → records.

`Router` is plain async Python: provider calls, record sink and stats fetcher are injected,
so it is tested without Ray. `RouterActor` (actors/router_actor.py) wires it to actors.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.budget import BudgetLedger, BudgetSpec, BudgetWarning, Reservation
from actors.cache_route import AnsweredHits, CacheProbe, CacheStep
from actors.clients.base import Completion
from actors.config import Config, ProviderSpec
from actors.contexts import configured_keys
from actors.cost import cost_usd, worst_case_cost
from actors.errors import FALLBACK, ErrorClass, ProviderError, refused_for
from actors.estimates import Belief, LearningSpec
from actors.explore import ExplorationBudget, ExplorationSpec
from actors.idempotency import IdempotencyBook, IdempotencyConflict
from actors.keys import never_mix
from actors.learning import Learner
from actors.messages import ProviderCall, ProviderReply
from actors.params import exclusions, named_only, prompt_tokens, reason, refuse_if_nobody
from actors.policies import POLICIES, PolicySettings, expected_cost, get_policy, rank
from actors.pricing import initial_value
from actors.records import AttemptRecord, FeedbackRecord, RequestRecord
from actors.response_cache import ResponseCache
from actors.route import RouteRequest, RouteResult, RoutingError, RoutingTrace, TraceAttempt, Usage
from actors.snapshot import Candidate, Need, Snapshot

log = logging.getLogger(__name__)
#: Policies that learn from outcomes, and so may explore.
LEARNING_POLICIES = frozenset({"accuracy-first", "cost-aware"})
#: Records kept for a rebuild from the audit trail that has not come yet.
MAX_LIVE = 100_000

CallProvider = Callable[[str, ProviderCall], Awaitable[ProviderReply]]
Sink = Callable[[list[Any]], None]
#: Settings of the first release, replaced by the learned estimates (README: Policies).
REMOVED = {"stats_ttl_s": "figures are learned in the router itself now",
           "prior_success": "see router.learning.prior_success",
           "prior_confidence": "confidence no longer enters the quality estimate",
           "prior_weight": "see router.learning.prior_weight",
           "cost_quality_margin": "cost-aware now trades quality for money with "
                                  "quality_target or outcome_value_usd"}


class RouterSpec(BaseModel):
    """The `router:` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_policy: str = Field("accuracy-first", description="Policy when a request names none.")
    default_timeout_s: float = Field(120.0, gt=0, description="Deadline when a request gives none.")
    snapshot_refresh_s: float = Field(0.25, gt=0, description="Background snapshot refresh period.")
    expected_output_tokens: int = Field(
        400, gt=0, description="Output tokens assumed for a provider until it has answered.")
    quality_target: float = Field(
        0.95, gt=0, le=1, description="cost-aware: the share of the best single provider's "
                                      "outcome score to hold over the stream, at least cost.")
    outcome_value_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="cost-aware: USD a right answer (score 1) "
        "is worth; when set it is used instead of quality_target.")
    learning: LearningSpec = Field(default_factory=LearningSpec)
    exploration: ExplorationSpec = Field(default_factory=ExplorationSpec)
    seed: int | None = Field(None, description="Seed of the exploration sampler (tests, replays).")
    store_text: bool = Field(True, description="Put prompt/response text on attempt records.")
    journal: bool = Field(True, description="Write-ahead journal of unacknowledged records.")
    journal_sync: bool | None = Field(
        None, description="Answer only once the request's records are committed to the "
        "journal (a group commit). Default: on with PostgreSQL (tracker.db_url), where it makes "
        "a node loss lose nothing answered; the file journal needs no wait.")
    journal_path: str | None = Field(
        None, description="Journal file; default: router-journal.jsonl next to the audit DB.")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, why in REMOVED.items():
                if key in data:
                    raise ValueError(f"router.{key} was removed: {why}")
        return data


def prompt_text(req: RouteRequest) -> str:
    return "\n\n".join(f"[{m.role}] {m.content}" for m in req.messages)


class Router:
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
        self.cache: ResponseCache | None = None  # set by the actor (actors/router_state.py)
        self.hit_ids = AnsweredHits(self.spec.learning.max_tracked_requests)
        self.outstanding: dict[str, int] = {}  # calls in flight per provider
        # Set by the actor: request ids as idempotency keys, and text as store_text allows.
        self.idempotency: IdempotencyBook | None = None
        self.keep_text: Callable[[str | None], str | None] = lambda text: text
        # Set by the actor: opens one provider's stream (actors/router_stream.py).
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
        """The policy over this context's posteriors: greedy, or a Thompson-sampled ranking
        when it disagrees and the exploration budget has room (the trace says which)."""
        learner = self.learner
        key = learner.key(req.context)
        known = learner.beliefs(key)
        beliefs = [(snap, known[name]) for name, snap in self.snapshots.items()]
        learns = policy in LEARNING_POLICIES
        explore = (learns and req.explore and learner.has_feedback
                   and self.exploration.can_explore() and not (req.provider or req.fallbacks))
        if explore:
            gauss = self.rng.gauss
            cands = [Candidate.from_snapshot(snap, b, _draw(b, gauss)) for snap, b in beliefs]
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
                fresh=req.request_id is None)  # an id we just made up is in no store
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
        """The answer as it streams (actors/router_stream.py): StreamStart, the events,
        then the RouteResult."""
        from actors.router_stream import route_stream

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

    def _conclude(self, request_id: str, policy: str, req: RouteRequest, trace: RoutingTrace,
                  records: list[Any], result: RouteResult | None, error: ProviderError | None,
                  started: float) -> None:
        """The request's own record, with its attempts' records, to the sink."""
        trace.latency_s = time.time() - started
        if trace.cached:
            self.hit_ids.add(request_id)
        records.append(self._request_record(request_id, policy, req, trace, result, error))
        self._sink(records)

    @staticmethod
    def _outcome(trace: RoutingTrace, result: RouteResult | None,
                 error: ProviderError | None) -> RouteResult:
        """The result with its trace, or the RoutingError."""
        if result is not None:
            result.trace = trace
            result.latency_s = trace.latency_s
            return result
        assert error is not None
        raise RoutingError(error.error_class, str(error) if error.provider else error.message, trace,
                           param=getattr(error, "param", None))

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

    async def _try(self, name: str, req: RouteRequest, request_id: str, policy: str,
                   completion: Completion, deadline: float, need: Need, trace: RoutingTrace,
                   records: list[Any], text: str | None,
                   execution: str) -> tuple[RouteResult | None, str | None]:
        spec = self.providers[name]
        now = time.time()
        worst = worst_case_cost(spec, need.prompt_tokens, req.max_tokens or spec.max_output_tokens,
                                req.n)
        try:
            res: Reservation = self.ledger.reserve(name, worst, now)
        except ProviderError as exc:
            return None, exc.message
        call = ProviderCall(request_id=request_id, completion=completion, deadline=deadline,
                            output=req.output, attempt_offset=len(trace.attempts),
                            priority=req.priority, execution=execution, reserved_usd=worst)
        self.outstanding[name] = self.outstanding.get(name, 0) + 1
        try:
            reply = await self._call(name, call)
        except Exception as exc:  # the actor died or is unreachable
            return None, self._actor_lost(name, exc, res, worst, req, request_id, policy,
                                          trace, records, text, execution)
        finally:
            self.outstanding[name] -= 1
        return self._take_reply(name, reply, res, req, request_id, policy, trace, records,
                                text, execution)

    def _actor_lost(self, name: str, exc: Exception, res: Reservation, worst: float,
                    req: RouteRequest, request_id: str, policy: str, trace: RoutingTrace,
                    records: list[Any], text: str | None, execution: str) -> str:
        """A provider actor that died or is unreachable: we cannot know what it spent, so
        settle at the reserved worst case (never under-count); the reason is returned."""
        self._settle(res, worst, trace)
        n = len(trace.attempts) + 1
        msg = f"provider actor unavailable: {type(exc).__name__}"
        trace.attempts.append(TraceAttempt(provider=name, attempt=n, ok=False,
                                           error_class=ErrorClass.INTERNAL.value, error=msg))
        records.append(AttemptRecord(
            request_id=request_id, attempt=n, ts=time.time(), provider=name,
            model=self.providers[name].model, policy=policy, context=req.context, ok=False,
            error_class=ErrorClass.INTERNAL.value, error=msg, cost_usd=0.0, prompt=text,
            execution=execution, simulated=self.snapshots[name].simulated, user=req.user))
        return msg

    def _take_reply(self, name: str, reply: ProviderReply, res: Reservation,
                    req: RouteRequest, request_id: str, policy: str, trace: RoutingTrace,
                    records: list[Any], text: str | None,
                    execution: str) -> tuple[RouteResult | None, str | None]:
        """A provider's reply: snapshot, budget settled at what was billed, attempts into
        the trace and the records; the result, or why there is none."""
        spec = self.providers[name]
        if reply.snapshot:
            self.update_snapshot(reply.snapshot)
        spent = sum(a.cost_usd for a in reply.attempts)
        self._settle(res, spent, trace)
        trace.simulated = trace.simulated or reply.simulated
        for a in reply.attempts:
            trace.attempts.append(TraceAttempt(provider=name, attempt=a.attempt, ok=a.ok,
                                               error_class=a.error_class, error=a.error,
                                               status=a.status, latency_s=a.latency_s))
            trace.input_tokens += a.input_tokens
            trace.output_tokens += a.output_tokens
            trace.cost_usd += a.cost_usd
            records.append(a.record(request_id, name, spec.model, policy=policy,
                                    context=req.context, prompt=text,
                                    response=self.keep_text(a.response)
                                    if self.spec.store_text else None,
                                    simulated=reply.simulated, execution=execution,
                                    user=req.user))
        if reply.result is None:
            if not reply.attempts:  # refused before any HTTP attempt (e.g. breaker just opened)
                n = len(trace.attempts) + 1
                trace.attempts.append(TraceAttempt(provider=name, attempt=n, ok=False,
                                                   error_class=reply.error_class, error=reply.error))
            return None, f"{reply.error_class}: {reply.error}"
        r = reply.result
        trace.chosen = name
        return RouteResult(
            request_id=request_id, provider=name, model=r.model, text=r.text,
            finish_reason=r.finish_reason, input_tokens=trace.input_tokens,
            output_tokens=trace.output_tokens, cost_usd=trace.cost_usd, latency_s=0.0,
            parsed=reply.parsed, trace=trace, tool_calls=r.tool_calls, choices=r.choices,
            logprobs=r.logprobs, usage=Usage.of(r),
        ), None

    def _settle(self, res: Reservation, actual: float, trace: RoutingTrace) -> None:
        for w in self.ledger.settle(res, actual, time.time()):
            trace.warnings.append(w.message)
            log.warning("budget soft limit: %s", w.message)
            if self._on_warning:
                self._on_warning(w)

    def _give_up(self, reasons: dict[str, str], trace: RoutingTrace) -> ProviderError:
        if not reasons:
            return ProviderError(ErrorClass.NO_PROVIDER, "no provider is configured or enabled")
        detail = "; ".join(f"{n}: {r}" for n, r in reasons.items())
        if refused_for(reasons.values(), ErrorClass.BUDGET_EXCEEDED):
            return ProviderError(ErrorClass.BUDGET_EXCEEDED, f"every provider is over budget — {detail}")
        return ProviderError(ErrorClass.NO_PROVIDER, f"no provider could answer — {detail}")

    def _request_record(self, request_id: str, policy: str, req: RouteRequest, trace: RoutingTrace,
                        result: RouteResult | None, error: ProviderError | None) -> RequestRecord:
        conf = None
        if result is not None and isinstance(result.parsed, dict):
            c = result.parsed.get("confidence")
            conf = float(c) if isinstance(c, int | float) else None
        return RequestRecord(
            request_id=request_id, ts=time.time(), policy=policy, context=req.context,
            provider=result.provider if result else None, model=result.model if result else None,
            ok=result is not None, error_class=error.error_class.value if error else None,
            error=(str(error)[:500] if error else None), attempts=len(trace.attempts),
            input_tokens=trace.input_tokens, output_tokens=trace.output_tokens,
            cost_usd=trace.cost_usd, latency_s=trace.latency_s, confidence=conf,
            quality_target=trace.quality_target, explored=trace.explored,
            simulated=trace.simulated, user=req.user, cached=trace.cached,
            saved_usd=trace.saved_usd,
        )


def _draw(b: Belief, gauss: Callable[[float, float], float]) -> float:
    """A Thompson draw of the outcome score: normal with the Beta posterior's moments
    (a Beta draw costs ~10× more, and the tails hardly matter for which provider wins)."""
    sd = math.sqrt(b.score * (1.0 - b.score) / (b.weight + 1.0))
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
