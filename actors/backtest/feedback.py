"""Outcome feedback: hold each score until the run has reached its outcome, then send it.

`FeedbackGate` (pure) releases the score of bar *i* once the run has dispatched bar
*i + horizon* of the same series — the point a live trader would know the outcome — so the
accuracy-first policy learns the realized hit rate as the backtest walks forward, without
seeing the future of bars it has not routed yet. Whatever is held when the run ends is
released then.

`FeedbackSender` sends released scores in batches through the router
(`client.afeedback_many`, actors/core/feedback.py): the router learns from each at once and
records it after the request's own records. A request the router does not remember (e.g.
one answered before a restart whose records are still on their way) goes to the tracker,
which may answer "unknown request id" for a moment — so that case is retried for a while.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from actors.core.feedback import FeedbackAck, FeedbackItem, FeedbackOutcome

log = logging.getLogger(__name__)
Send = Callable[[list[FeedbackItem]], Awaitable[list[FeedbackAck]]]


class Item(NamedTuple):
    request_id: str
    score: float
    since: float  # monotonic time it was released (for giving up)


class FeedbackGate:
    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.frontier: dict[str, int] = {}
        self._held: dict[str, list[tuple[int, str, float]]] = {}

    def _release(self, series: str) -> list[tuple[str, float]]:
        heap = self._held.get(series)
        out: list[tuple[str, float]] = []
        front = self.frontier.get(series, -1)
        while heap and heap[0][0] <= front:
            _, rid, score = heapq.heappop(heap)
            out.append((rid, score))
        return out

    def advance(self, series: str, bar: int) -> list[tuple[str, float]]:
        """The run dispatched `bar`; returns scores that became known."""
        if bar > self.frontier.get(series, -1):
            self.frontier[series] = bar
        return self._release(series)

    def hold(self, series: str, bar: int, request_id: str, score: float) -> list[tuple[str, float]]:
        heapq.heappush(self._held.setdefault(series, []), (bar + self.horizon, request_id, score))
        return self._release(series)

    def drain(self) -> list[tuple[str, float]]:
        out = [(rid, s) for heap in self._held.values() for _, rid, s in sorted(heap)]
        self._held.clear()
        return out

    @property
    def held(self) -> int:
        return sum(len(h) for h in self._held.values())


def router_send(client: Any) -> Send:
    return client.afeedback_many


class FeedbackSender:
    """Sends released scores to the router in batches (one actor call for up to `batch`),
    in the order they were released, one batch at a time. An item the router reports
    unknown (its request's records not flushed yet) is asked again after `retry_s`, one
    that failed (tracker restarting) after 4 × `retry_s`, each given up after
    `give_up_s`; they ride along with the next batch, so they never hold up the rest."""

    def __init__(self, send: Send, on_ack: Callable[[str], None], *, batch: int = 256,
                 retry_s: float = 0.25, give_up_s: float = 60.0) -> None:
        self._send = send
        self._on_ack = on_ack
        self._batch = batch
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self._retry: list[tuple[float, Item]] = []  # (due, item)
        self._closing = False
        self._retry_s = retry_s
        self._give_up_s = give_up_s
        self._worker = asyncio.ensure_future(self._work())
        self.sent = 0
        self.failed = 0

    def put(self, request_id: str, score: float) -> None:
        self._queue.put_nowait(Item(request_id, score, time.monotonic()))

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._retry)

    async def _next(self) -> list[Item] | None:
        """The next batch: retries now due, then queued items; None once closed and done."""
        while True:
            now = time.monotonic()
            out = [it for due, it in self._retry if due <= now]
            self._retry = [(due, it) for due, it in self._retry if due > now]
            while len(out) < self._batch and not self._queue.empty():
                it = self._queue.get_nowait()
                if it is None:
                    self._closing = True
                else:
                    out.append(it)
            if out:
                return out
            if self._closing and not self._retry:
                return None
            wait = min(d for d, _ in self._retry) - now if self._retry else None
            try:
                it = await asyncio.wait_for(self._queue.get(), wait)
            except TimeoutError:
                continue
            if it is None:
                self._closing = True
            else:
                return [it]

    async def _work(self) -> None:
        while (items := await self._next()) is not None:
            try:
                acks = await self._send([FeedbackItem(request_id=i.request_id, score=i.score)
                                         for i in items])
            except Exception as exc:  # router restarting etc.: never stop the run
                for it in items:
                    self._again(it, FeedbackOutcome.FAILED, str(exc))
                continue
            for it, ack in zip(items, acks, strict=True):
                if ack.outcome == FeedbackOutcome.RECORDED:
                    self.sent += 1
                    self._on_ack(it.request_id)
                else:
                    self._again(it, ack.outcome, ack.error)

    def _again(self, it: Item, outcome: FeedbackOutcome, error: str | None) -> None:
        now = time.monotonic()
        if outcome == FeedbackOutcome.INVALID or now - it.since > self._give_up_s:
            self.failed += 1
            why = "request never recorded" if outcome == FeedbackOutcome.UNKNOWN else error
            log.warning("feedback for %s dropped: %s", it.request_id, why)
            return
        wait = self._retry_s if outcome == FeedbackOutcome.UNKNOWN else self._retry_s * 4
        self._retry.append((now + wait, it))

    async def close(self) -> None:
        """Wait until everything queued was sent (or given up)."""
        self._queue.put_nowait(None)
        await self._worker
