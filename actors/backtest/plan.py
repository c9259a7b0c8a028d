"""Planning: OHLCV chunks → ready `RouteRequest`s, on the cluster's nodes or in the driver.

Contexts are cheap (~80 µs a bar, vectorized in `prompts.contexts_for_bars`) and a rendered
prompt ~0.2 ms, so for one series this is a small share of the work. On a multi-node
cluster it runs in Ray tasks — per chunk of bars, `SPREAD` over the nodes — so a run over
many long series builds its prompts on every node while the driver only dispatches; on one
node it runs in a driver thread (see `Planner`). Either way planning stays a bounded number
of chunks ahead of dispatch (back-pressure on planning as well as on requests).

A job is one (bar, task); its prompt does not depend on the policy, so the runner expands a
job into one request per policy without rendering it again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ray

from actors.backtest.inputs import Series
from actors.backtest.outcome import adverse_excursion, forward_returns
from actors.config import Config
from actors.core.errors import task_cause
from actors.routing.analysis import analysis_request
from actors.routing.route import RouteRequest
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


class _Jobs:
    """Jobs from one series' contexts; `contexts_for_bars` computes the features once and
    yields contexts lazily, so taking chunk after chunk never recomputes them."""

    def __init__(self, frame: Any, symbol: str, timeframe: str, lo: int, hi: int,
                 tasks: list[str], horizon: int, config: Config, route: dict[str, Any]) -> None:
        self.ctxs = contexts_for_bars(frame, symbol, timeframe, start=frame.index[lo],
                                      end=frame.index[hi], rules=config.regime)
        self.symbol, self.timeframe, self.tasks, self.config = symbol, timeframe, tasks, config
        self.close = frame["close"].to_numpy()
        self.fwd = forward_returns(self.close, horizon)
        self.adverse = adverse_excursion(self.close, frame["low"].to_numpy(), horizon)
        self.route = dict(route)
        self.tags = self.route.pop("context", {})  # analysis_request's 1st parameter: `context`
        self.next = lo
        self.node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"

    def take(self, n: int) -> list[BarJob]:
        jobs = []
        for _ in range(n):
            ctx = next(self.ctxs)
            i = self.next
            self.next += 1
            for task in self.tasks:
                req = analysis_request(ctx, task, self.config, **self.route)
                if self.tags:
                    req = req.model_copy(update={"context": {**req.context, **self.tags}})
                jobs.append(BarJob(self.symbol, self.timeframe, i, ctx.as_of, task, ctx.regime,
                                   float(self.close[i]), float(self.fwd[i]),
                                   float(self.adverse[i]), req, self.node))
        return jobs


def plan_chunk(frame: Any, symbol: str, timeframe: str, lo: int, hi: int, tasks: list[str],
               horizon: int, config: Config, route: dict[str, Any]) -> list[BarJob]:
    """Jobs for bars lo..hi (positions in `frame`), bar by bar, tasks in order (a Ray task)."""
    return _Jobs(frame, symbol, timeframe, lo, hi, tasks, horizon, config, route).take(hi - lo + 1)


_plan_remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD", max_retries=2)(plan_chunk)


def chunks(series: list[Series], chunk_bars: int) -> list[tuple[int, int, int]]:
    """(series index, lo, hi) round-robin over the series, so all of them advance together."""
    per = [[(k, lo, min(lo + chunk_bars - 1, s.hi)) for lo in range(s.lo, s.hi + 1, chunk_bars)]
           for k, s in enumerate(series)]
    out = []
    for i in range(max(len(p) for p in per)):
        out.extend(p[i] for p in per if i < len(p))
    return out


def alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n.get("Alive")) if ray.is_initialized() else 1


class Planner:
    """Yields jobs chunk by chunk, in order, planning ahead of the dispatcher.

    `where="cluster"`: chunk tasks SPREAD over the nodes (at most `prefetch` in flight); the
    first chunk is planned in the driver so requests start while workers spin up.
    `where="driver"`: in a thread of the driver, one chunk ahead, features once per series.
    `"auto"` picks cluster when there is more than one node: on a single node, worker
    processes cost more (start-up ~1–2 s of CPU each, next to the router and providers on
    the same cores) than the ~0.25 ms a bar they would take off the driver.
    """

    def __init__(self, series: list[Series], tasks: list[str], horizon: int, config: Config,
                 route: dict[str, Any], chunk_bars: int, prefetch: int = 4,
                 where: str = "auto") -> None:
        self.series = series
        self.tasks = tasks
        self.horizon = horizon
        self.config = config
        self.route = route
        self.plan = chunks(series, chunk_bars)
        self.prefetch = max(1, prefetch)
        self.where = where if where != "auto" else ("cluster" if alive_nodes() > 1 else "driver")
        self.nodes: set[str] = set()

    def jobs(self) -> AsyncIterator[BarJob]:
        return self._cluster() if self.where == "cluster" else self._driver()

    def _local(self, k: int) -> _Jobs:
        s = self.series[k]
        return _Jobs(s.frame, s.symbol, s.timeframe, s.lo, s.hi, self.tasks, self.horizon,
                     self.config, self.route)

    async def _driver(self) -> AsyncIterator[BarJob]:
        per: dict[int, _Jobs] = {}

        def take(k: int, lo: int, hi: int) -> list[BarJob]:
            if k not in per:
                per[k] = self._local(k)
            return per[k].take(hi - lo + 1)

        todo = deque(self.plan)
        ahead = asyncio.ensure_future(asyncio.to_thread(take, *todo.popleft())) if todo else None
        while ahead is not None:
            jobs = await ahead
            ahead = asyncio.ensure_future(asyncio.to_thread(take, *todo.popleft())) if todo \
                else None
            for job in jobs:
                self.nodes.add(job.node)
                yield job

    async def _cluster(self) -> AsyncIterator[BarJob]:
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
        if first is not None:
            k, lo, hi = first
            s = self.series[k]
            jobs = await asyncio.to_thread(plan_chunk, s.frame, s.symbol, s.timeframe, lo, hi,
                                           self.tasks, self.horizon, self.config, self.route)
            for job in jobs:
                self.nodes.add(job.node)
                yield job
        while pending:
            ref = pending.popleft()
            submit()
            try:
                jobs = await ref
            except ray.exceptions.RayTaskError as exc:
                raise RuntimeError(f"planning failed: {task_cause(exc)}") from None
            for job in jobs:
                self.nodes.add(job.node)
                yield job
