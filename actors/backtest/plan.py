"""Planning: OHLCV chunks → ready `RouteRequest`s, in Ray tasks spread over the cluster's nodes.

Contexts are cheap (~80 µs a bar, vectorized in `prompts.contexts_for_bars`) and a rendered
prompt ~0.2 ms, so for one series this is a small share of the work. It runs in Ray tasks
anyway — per chunk of bars, `SPREAD` over the nodes — so a run over many long series builds
its prompts on every node while the driver only dispatches, and the driver holds at most
`prefetch` chunks of prepared requests (back-pressure on planning as well as on requests).

A job is one (bar, task); its prompt does not depend on the policy, so the runner expands a
job into one request per policy without rendering it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ray

from actors.analysis import analysis_request
from actors.backtest.inputs import Series
from actors.backtest.outcome import adverse_excursion, forward_returns
from actors.config import Config
from actors.route import RouteRequest
from prompts import contexts_for_bars


@dataclass(frozen=True)
class BarJob:
    """One task about one bar, with its known future (for the outcome score)."""

    symbol: str
    timeframe: str
    bar: int
    ts: datetime
    task: str
    regime: str
    close: float
    fwd_return: float
    adverse: float
    request: RouteRequest  # no policy, request id or provider yet
    node: str  # node id of the planning task

    @property
    def series(self) -> str:
        return f"{self.symbol} {self.timeframe}"

    def key(self, policy: str) -> str:
        """The unit of work a run records exactly once."""
        return f"{self.symbol}|{self.timeframe}|{self.ts.isoformat()}|{self.task}|{policy}"


def plan_chunk(frame: Any, symbol: str, timeframe: str, lo: int, hi: int, tasks: list[str],
               horizon: int, config: Config, route: dict[str, Any]) -> list[BarJob]:
    """Jobs for bars lo..hi (positions in `frame`), bar by bar, tasks in order."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    ctxs = contexts_for_bars(frame, symbol, timeframe, start=frame.index[lo], end=frame.index[hi])
    close = frame["close"].to_numpy()
    fwd = forward_returns(close, horizon)
    adverse = adverse_excursion(close, frame["low"].to_numpy(), horizon)
    route = dict(route)
    tags = route.pop("context", {})  # (analysis_request's first parameter is also `context`)
    jobs = []
    for i, ctx in zip(range(lo, hi + 1), ctxs, strict=True):
        for task in tasks:
            req = analysis_request(ctx, task, config, **route)
            if tags:
                req = req.model_copy(update={"context": {**req.context, **tags}})
            jobs.append(BarJob(symbol, timeframe, i, ctx.as_of, task, ctx.regime,
                               float(close[i]), float(fwd[i]), float(adverse[i]), req, node))
    return jobs


_plan_remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=2)(plan_chunk)


def chunks(series: list[Series], chunk_bars: int) -> list[tuple[int, int, int]]:
    """(series index, lo, hi) round-robin over the series, so all of them advance together."""
    per = [[(k, lo, min(lo + chunk_bars - 1, s.hi)) for lo in range(s.lo, s.hi + 1, chunk_bars)]
           for k, s in enumerate(series)]
    out = []
    for i in range(max(len(p) for p in per)):
        out.extend(p[i] for p in per if i < len(p))
    return out


class Planner:
    """Submits chunk tasks ahead of the dispatcher (at most `prefetch` in flight) and
    yields their jobs in order. The first chunk is planned in the driver, so requests start
    at once instead of after a worker process has started (~2 s here)."""

    def __init__(self, series: list[Series], tasks: list[str], horizon: int, config: Config,
                 route: dict[str, Any], chunk_bars: int, prefetch: int = 4) -> None:
        self.series = series
        self.tasks = tasks
        self.horizon = horizon
        self.config = config
        self.route = route
        self.plan = chunks(series, chunk_bars)
        self.prefetch = max(1, prefetch)
        self.nodes: set[str] = set()

    async def jobs(self) -> AsyncIterator[BarJob]:
        frames = [ray.put(s.frame) for s in self.series]
        todo = deque(self.plan)
        pending: deque[Any] = deque()

        def submit() -> None:
            while todo and len(pending) < self.prefetch:
                k, lo, hi = todo.popleft()
                s = self.series[k]
                pending.append(_plan_remote.remote(frames[k], s.symbol, s.timeframe, lo, hi,
                                                   self.tasks, self.horizon, self.config,
                                                   self.route))

        first = todo.popleft() if todo else None
        submit()
        if first is not None:  # in the driver: requests start while workers spin up
            k, lo, hi = first
            s = self.series[k]
            jobs = plan_chunk(s.frame, s.symbol, s.timeframe, lo, hi, self.tasks, self.horizon,
                              self.config, self.route)
            for job in jobs:
                self.nodes.add(job.node)
                yield job
        while pending:
            ref = pending.popleft()
            submit()
            try:
                jobs = await ref
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None) or exc
                raise RuntimeError(f"planning failed: {cause}") from None
            for job in jobs:
                self.nodes.add(job.node)
                yield job
