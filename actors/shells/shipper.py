"""Records from the router to the tracker: journaled first, sent in batches, kept until
acknowledged, re-sent if not.

Plain Python (tested without Ray): `send(batch)` is whatever delivers a batch to the tracker
(a channel call whose completion means the tracker committed it). Each request's records are
appended to the journal before its answer goes back (actors/stores/journal.py, pg_journal.py), so a
killed router loses nothing it answered; a restarted one re-sends what the journal holds.

One batch is in flight at a time, the next sent only after the previous one was
acknowledged: an async actor does not run calls in the order they were sent, and a feedback
record must never arrive before its request's records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

FLUSH_EVERY_S = 0.05
MAX_BATCH = 500  # records per batch (a request's records are never split)
log = logging.getLogger(__name__)

Entry = tuple[int, list[Any]]  # (sequence number, one request's records)


class RecordJournal(Protocol):
    """What the shipper needs of a journal (a file or a database table)."""

    seq: int

    def append(self, records: list[Any]) -> int: ...
    def ack(self, seqs: Any) -> None: ...
    def pending(self) -> list[Entry]: ...


class RecordShipper:
    """The router's outbox to the tracker."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[Any]],
                 journal: RecordJournal | None = None, *,
                 on_failure: Callable[[], None] = lambda: None,
                 max_batch: int = MAX_BATCH) -> None:
        """`on_failure` runs when a send fails (e.g. drop a stale handle before re-sending)."""
        self._send = send
        self.journal = journal
        self._on_failure = on_failure
        self._max_batch = max_batch
        self._buffer: deque[Entry] = deque(journal.pending() if journal else ())
        self._unacked: list[Entry] = []  # the batch in flight
        self.seq = journal.seq if journal else 0  # last sequence number handed out
        self.resending = len(self._buffer)  # journaled before a restart, never acknowledged

    def add(self, records: list[Any]) -> int:
        """Journal one request's records (before its answer goes back), then queue them."""
        if self.journal is not None:
            self.seq = self.journal.append(records)
        else:
            self.seq += 1
        self._buffer.append((self.seq, records))
        return self.seq

    async def run(self, every_s: float = FLUSH_EVERY_S) -> None:
        """The flush loop (one task per router)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.flush()
            except Exception as exc:  # never let the loop die
                log.warning("record flush failed: %s", exc)

    async def flush(self) -> bool:
        """Send everything queued, batch after acknowledged batch; False when a send failed
        (its batch is queued again at the front for the next round)."""
        while self._buffer:
            batch: list[Entry] = []
            n = 0
            while self._buffer and (n == 0 or n + len(self._buffer[0][1]) <= self._max_batch):
                entry = self._buffer.popleft()
                batch.append(entry)
                n += len(entry[1])
            self._unacked = batch
            try:
                await self._send([r for _, records in batch for r in records])
            except Exception as exc:
                log.warning("tracker did not acknowledge %d records (%s); re-sending", n,
                            type(exc).__name__)
                self._unacked = []
                self._buffer.extendleft(reversed(batch))
                self._on_failure()
                return False
            self._unacked = []
            if self.journal is not None:
                self.journal.ack(seq for seq, _ in batch)
        return True

    def outstanding(self) -> list[int]:
        """Sequence numbers not yet acknowledged (queued or in flight)."""
        return [seq for seq, _ in self._buffer] + [seq for seq, _ in self._unacked]

    def unacknowledged_records(self) -> int:
        return sum(len(r) for _, r in self._buffer) + sum(len(r) for _, r in self._unacked)

    async def drain(self, timeout_s: float, poll_s: float = 0.02) -> int:
        """Wait until every record queued *now* is acknowledged (later ones don't count, so
        this returns promptly under steady load); the records still unacknowledged after
        `timeout_s` (0 when all went). The flush loop does the sending."""
        target = self.seq
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(seq <= target for seq in self.outstanding()):
                return 0
            await asyncio.sleep(poll_s)
        return self.unacknowledged_records()
