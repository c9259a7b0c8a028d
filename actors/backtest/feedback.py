"""Outcome feedback: hold each score until the run has reached its outcome, then send it.

`FeedbackGate` (pure) releases the score of bar *i* once the run has dispatched bar
*i + horizon* of the same series — the point a live trader would know the outcome — so the
accuracy-first policy learns the realized hit rate as the backtest walks forward, without
seeing the future of bars it has not routed yet. Whatever is held when the run ends is
released then.

`FeedbackSender` sends released scores with a few concurrent workers, through the router
(`client.afeedback`): the router learns from each at once and records it after the
request's own records. A request the router does not remember (e.g. one answered before
a restart whose records are still on their way) goes to the tracker, which may answer
"unknown request id" for a moment — so that case is retried for a while.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)
Send = Callable[[str, float], Awaitable[None]]


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
    return client.afeedback


class FeedbackSender:
    """Concurrent sending with retries of "unknown request id" (records not flushed yet)."""

    def __init__(self, send: Send, on_ack: Callable[[str], None], *, workers: int = 4,
                 retry_s: float = 0.25, give_up_s: float = 60.0) -> None:
        self._send = send
        self._on_ack = on_ack
        self._queue: asyncio.Queue[tuple[str, float, float] | None] = asyncio.Queue()
        self._retry_s = retry_s
        self._give_up_s = give_up_s
        self._workers = [asyncio.ensure_future(self._work()) for _ in range(workers)]
        self.sent = 0
        self.failed = 0

    def put(self, request_id: str, score: float) -> None:
        self._queue.put_nowait((request_id, score, time.monotonic()))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            rid, score, since = item
            while True:
                try:
                    await self._send(rid, score)
                    self.sent += 1
                    self._on_ack(rid)
                    break
                except KeyError:
                    if time.monotonic() - since > self._give_up_s:
                        self.failed += 1
                        log.warning("feedback for %s dropped: request never recorded", rid)
                        break
                    await asyncio.sleep(self._retry_s)
                except Exception as exc:  # tracker restarting etc.: never stop the run
                    if time.monotonic() - since > self._give_up_s:
                        self.failed += 1
                        log.warning("feedback for %s dropped: %s", rid, exc)
                        break
                    await asyncio.sleep(self._retry_s * 4)

    async def close(self) -> None:
        """Wait until everything queued was sent (or given up)."""
        for _ in self._workers:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._workers)

    def abort(self) -> None:
        for w in self._workers:
            w.cancel()
