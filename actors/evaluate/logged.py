"""Evaluate a policy on the audit trail's own feedback: an off-policy replay.

The trail knows only the logged provider's outcome for each request. Li et al.'s replay
method (WSDM 2011) streams the logged requests through the policy (the plain Router core,
learning online as it would live): where the policy's first choice is the logged provider,
the event is accepted — the policy gets that outcome and learns from it; otherwise the
event is skipped and the policy learns nothing from it. The estimate is unbiased when the
logged choices were made uniformly at random; a trail written by a learning router is
biased towards what that router chose, so read the figures as indicative, and mind how
few events were accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.clients.base import Result
from actors.config import Config
from actors.core.errors import ErrorClass
from actors.evaluate.replay import prompt_of, router_for
from actors.routing.route import RouteRequest, RoutingError
from actors.rpc.messages import AttemptInfo, ProviderCall, ProviderReply
from actors.stores.audit_base import AuditBackend


@dataclass
class Logged:
    request_id: str
    context: dict[str, str]
    provider: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    score: float


@dataclass
class OffPolicy:
    policy: str
    events: int
    accepted: int
    score: float  # mean outcome over accepted events (NaN if none)
    cost_per_request: float  # mean cost over accepted events
    logged_score: float  # what the logging policy got, over all events
    logged_cost_per_request: float

    def render(self) -> str:
        share = self.accepted / self.events if self.events else 0.0
        return (f"{self.policy}: {self.accepted} of {self.events} logged events accepted "
                f"({share:.1%}); estimated score {self.score:.4f} (logged {self.logged_score:.4f}),"
                f" cost per request ${self.cost_per_request:.6f} (logged "
                f"${self.logged_cost_per_request:.6f}). Li et al.'s replay method: unbiased only "
                "if the logged choices were uniformly random.")


def logged_stream(store: AuditBackend, until: float = float("inf"),
                  max_requests: int = 1_000_000) -> list[Logged]:
    """Answered requests with feedback, in the order they were routed."""
    from actors.core.records import FeedbackRecord, RequestRecord

    out: dict[str, Logged] = {}
    for r in store.history(until, max_requests):
        if isinstance(r, RequestRecord) and r.ok and r.provider:
            out[r.request_id] = Logged(r.request_id, dict(r.context), r.provider,
                                       r.input_tokens, r.output_tokens, r.cost_usd, np.nan)
        elif isinstance(r, FeedbackRecord) and r.request_id in out:
            out[r.request_id].score = r.score
    return [x for x in out.values() if not np.isnan(x.score)]


def replay_logged(stream: list[Logged], config: Config, policy: str, *,
                  seed: int = 0) -> OffPolicy:
    current: list[Logged] = []

    async def call(name: str, c: ProviderCall) -> ProviderReply:
        ev = current[0]
        spec = config.provider(name)
        if name != ev.provider or c.attempt_offset:
            # Not what was logged: this event is skipped (no fallback, nothing learned).
            return ProviderReply(provider=name, model=spec.model,
                                 error_class=ErrorClass.BAD_REQUEST.value,
                                 error="not the logged provider (event skipped)")
        res = Result(provider=name, model=spec.model, text="", input_tokens=ev.input_tokens,
                     output_tokens=ev.output_tokens, finish_reason="stop", latency_s=0.0,
                     cost_usd=ev.cost_usd)
        return ProviderReply(provider=name, model=spec.model, result=res, attempts=[
            AttemptInfo(attempt=1, ts=0.0, ok=True, input_tokens=ev.input_tokens,
                        output_tokens=ev.output_tokens, cost_usd=ev.cost_usd)])

    import asyncio

    async def run() -> OffPolicy:
        router = router_for(config, seed, call=call)
        scores, costs = [], []
        for i, ev in enumerate(stream):
            current[:] = [ev]
            req = RouteRequest(messages=prompt_of(ev.input_tokens), policy=policy,
                               context=ev.context, request_id=f"{ev.request_id}~eval{i}")
            try:
                res = await router.route(req)
            except RoutingError:
                continue
            scores.append(ev.score)
            costs.append(res.cost_usd)
            router.feedback(res.request_id, ev.score)
        n = len(stream)
        return OffPolicy(policy, n, len(scores),
                         float(np.mean(scores)) if scores else float("nan"),
                         float(np.mean(costs)) if costs else float("nan"),
                         float(np.mean([e.score for e in stream])) if n else float("nan"),
                         float(np.mean([e.cost_usd for e in stream])) if n else float("nan"))

    return asyncio.run(run())
