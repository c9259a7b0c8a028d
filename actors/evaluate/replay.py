"""Replay a stream of requests through the plain Router core, with online feedback.

The router is the one the live actors run (`actors.routing.router.Router`, its learner, policies
and exploration budget); only the provider call is injected: it answers from the outcome
table at once, at the configured prices. Feedback for request *i* reaches the router before
request *i + inflight* is decided, as with `inflight` requests in flight live. A simulated
clock spaces requests `1/rate` s apart (it drives time half-lives and the USD-per-hour
exploration budget).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from actors.clients.base import Message, Result
from actors.config import Config
from actors.core.cost import cost_usd
from actors.core.tokens import CHARS_PER_TOKEN, MESSAGE_OVERHEAD, REQUEST_OVERHEAD
from actors.evaluate.table import OutcomeTable
from actors.routing.route import RouteRequest, RoutingError
from actors.routing.router import Router
from actors.rpc.messages import AttemptInfo, ProviderCall, ProviderReply


@dataclass
class Replayed:
    """Per request: who answered (None: refused), the outcome it got, what it cost."""

    chosen: list[str | None]
    outcome: np.ndarray
    cost: np.ndarray
    explored: np.ndarray
    value_usd: np.ndarray  # cost-aware's price of quality at each decision (NaN otherwise)


def prompt_of(tokens: int) -> list[Message]:
    """A prompt the router's estimator counts as `tokens` tokens."""
    body = max(int(tokens) - REQUEST_OVERHEAD - MESSAGE_OVERHEAD, 1)
    return [Message(role="user", content="x" * (body * CHARS_PER_TOKEN))]


def router_for(config: Config, seed: int, sink: Callable[[list], None] | None = None,
               call=None) -> Router:
    data = config.model_dump()
    data["router"] = {**data["router"], "seed": seed}
    return Router(Config.model_validate(data), call or _unused, sink or (lambda recs: None))


async def _unused(name: str, call: ProviderCall) -> ProviderReply:
    raise RuntimeError("no provider call injected")


def replay(table: OutcomeTable, config: Config, policy: str, *, inflight: int = 8,
           seed: int = 0, rate: float = 10.0, quality_target: float | None = None,
           outcome_value_usd: float | None = None, router: Router | None = None,
           progress: Callable[[int], None] | None = None) -> Replayed:
    """Route every row in order; the chosen provider's outcome is fed back."""
    return asyncio.run(areplay(table, config, policy, inflight=inflight, seed=seed, rate=rate,
                               quality_target=quality_target,
                               outcome_value_usd=outcome_value_usd, router=router,
                               progress=progress))


async def areplay(table: OutcomeTable, config: Config, policy: str, *, inflight: int = 8,
                  seed: int = 0, rate: float = 10.0, quality_target: float | None = None,
                  outcome_value_usd: float | None = None, router: Router | None = None,
                  progress: Callable[[int], None] | None = None) -> Replayed:
    specs = {p.name: p for p in config.providers}
    row = [0]

    async def call(name: str, c: ProviderCall) -> ProviderReply:
        i = row[0]
        tin, tout = int(table.prompt_tokens[i]), int(table.output_tokens[name][i])
        cost = cost_usd(specs[name], tin, tout)
        res = Result(provider=name, model=specs[name].model, text="", input_tokens=tin,
                     output_tokens=tout, finish_reason="stop", latency_s=0.0, cost_usd=cost)
        return ProviderReply(provider=name, model=specs[name].model, result=res, attempts=[
            AttemptInfo(attempt=c.attempt_offset + 1, ts=clock(), ok=True, input_tokens=tin,
                        output_tokens=tout, cost_usd=cost)])

    def clock() -> float:
        return 1.7e9 + row[0] / rate

    r = router or router_for(config, seed, call=call)
    r._call = call
    r.clock = clock
    n = len(table)
    chosen: list[str | None] = [None] * n
    outcome = np.full(n, np.nan)
    cost = np.zeros(n)
    explored = np.zeros(n, bool)
    value = np.full(n, np.nan)
    pending: deque[tuple[str, float]] = deque()
    for i in range(n):
        row[0] = i
        while len(pending) >= inflight:
            r.feedback(*pending.popleft())
        req = RouteRequest(messages=prompt_of(table.prompt_tokens[i]), policy=policy,
                           context=table.contexts[i], request_id=table.request_ids[i],
                           quality_target=quality_target, outcome_value_usd=outcome_value_usd)
        try:
            res = await r.route(req)
        except RoutingError:
            continue
        chosen[i] = res.provider
        outcome[i] = table.outcomes[res.provider][i]
        cost[i] = res.cost_usd
        explored[i] = res.trace.explored
        if res.trace.value_usd is not None:
            value[i] = res.trace.value_usd
        pending.append((res.request_id, float(outcome[i])))
        if progress is not None and i % 1000 == 999:
            progress(i + 1)
    while pending:
        r.feedback(*pending.popleft())
    return Replayed(chosen, outcome, cost, explored, value)
