"""The router's outbox to the tracker, without Ray: journaled, batched, in order, re-sent."""

from __future__ import annotations

import asyncio

from actors.shells.shipper import RecordShipper
from actors.stores.journal import Journal
from tests.test_journal import recs


class Tracker:
    """Acknowledges batches, or fails the next `fail` sends."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.batches: list[list[str]] = []

    async def send(self, batch: list) -> None:
        await asyncio.sleep(0)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("tracker restarting")
        self.batches.append([f"{type(r).__name__[0]}:{r.request_id}" for r in batch])


def sent(t: Tracker) -> list[str]:
    return [x for b in t.batches for x in b]


async def test_batches_keep_order_never_split_a_request_and_ack_the_journal(tmp_path):
    t = Tracker()
    journal = Journal(tmp_path / "j.jsonl")
    s = RecordShipper(t.send, journal, max_batch=5)
    for i in range(6):
        s.add(recs(i))  # two records each
    assert await s.flush()
    assert [len(b) for b in t.batches] == [4, 4, 4]  # 5 would split a request's pair
    assert sent(t) == [x for i in range(6) for x in (f"A:r{i}", f"R:r{i}")]
    assert s.outstanding() == [] and journal.acked == 6
    assert Journal(tmp_path / "j.jsonl").pending() == []


async def test_an_unacknowledged_batch_is_sent_again_first_and_in_order():
    t = Tracker(fail=1)
    lost: list[int] = []
    s = RecordShipper(t.send, on_failure=lambda: lost.append(1), max_batch=4)
    for i in range(4):
        s.add(recs(i))
    assert not await s.flush()  # the first batch failed: nothing sent, handle dropped
    assert lost == [1] and t.batches == [] and s.outstanding() == [1, 2, 3, 4]
    s.add(recs(9))
    assert await s.flush()
    assert sent(t) == [x for i in (0, 1, 2, 3, 9) for x in (f"A:r{i}", f"R:r{i}")]


async def test_a_restart_resends_what_the_journal_holds_before_anything_new(tmp_path):
    t = Tracker(fail=10)
    first = RecordShipper(t.send, Journal(tmp_path / "j.jsonl"))
    for i in range(3):
        first.add(recs(i))
    assert not await first.flush()  # the router dies with these unacknowledged
    t.fail = 0
    again = RecordShipper(t.send, Journal(tmp_path / "j.jsonl"))
    assert again.resending == 3 and again.seq == 3
    again.add(recs(7))
    assert await again.flush()
    assert sent(t) == [x for i in (0, 1, 2, 7) for x in (f"A:r{i}", f"R:r{i}")]


async def test_drain_waits_for_what_was_queued_and_says_what_is_left():
    t = Tracker(fail=1_000)
    s = RecordShipper(t.send)
    s.add(recs(1))
    loop = asyncio.create_task(s.run(every_s=0.001))
    try:
        assert await s.drain(0.05, poll_s=0.001) == 2  # the tracker is down: 2 records left
        t.fail = 0
        assert await s.drain(5.0, poll_s=0.001) == 0
    finally:
        loop.cancel()
    assert sent(t) == ["A:r1", "R:r1"]
