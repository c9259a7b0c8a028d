"""Scores in batches, without Ray: the router's per-item handling of a batch
(actors/core/feedback.py) and the backtest's sender (actors/backtest/feedback.py) — one call
for many scores, in order, unknown ids asked again, bad ones dropped, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from actors.backtest.feedback import FeedbackSender
from actors.core.feedback import FeedbackAck, FeedbackItem, FeedbackOutcome, record_all


def _items(*pairs: tuple[str, float]) -> list[FeedbackItem]:
    return [FeedbackItem(request_id=r, score=s) for r, s in pairs]


async def test_a_batch_is_taken_in_order_and_acknowledged_per_item():
    learned: list[str] = []
    forwarded: list[str] = []

    def learn(rid: str, score: float):
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"feedback score must be within 0..1, got {score}")
        if rid.startswith("mine"):
            learned.append(rid)
            return object()
        return None

    async def forward(rid: str, score: float) -> None:
        forwarded.append(rid)
        if rid == "unknown":
            raise KeyError("unknown request id")
        if rid == "down":
            raise ConnectionError("tracker restarting")

    items = _items(("mine-1", 1.0), ("old", 0.0), ("unknown", 1.0), ("mine-2", 0.0),
                   ("bad", 2.0), ("down", 1.0))
    acks = await record_all(items, learn, forward)
    assert [a.request_id for a in acks] == [i.request_id for i in items]
    assert [a.outcome for a in acks] == [
        FeedbackOutcome.RECORDED, FeedbackOutcome.RECORDED, FeedbackOutcome.UNKNOWN,
        FeedbackOutcome.RECORDED, FeedbackOutcome.INVALID, FeedbackOutcome.FAILED]
    assert learned == ["mine-1", "mine-2"]  # in order, the router's own ones not forwarded
    assert forwarded == ["old", "unknown", "down"]
    assert "within 0..1" in (acks[4].error or "")


class _Router:
    """Acknowledges like `record_all`: ids in `late` are unknown the first `late[id]`
    times, "bad" is invalid, and the first call fails when `down`."""

    def __init__(self, late: dict[str, int] | None = None, down: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.recorded: list[str] = []
        self.late = dict(late or {})
        self.down = down

    async def send(self, items: list[FeedbackItem]) -> list[FeedbackAck]:
        self.calls.append([i.request_id for i in items])
        await asyncio.sleep(0)
        if self.down:
            self.down = False
            raise ConnectionError("router restarting")
        acks = []
        for i in items:
            if i.request_id == "bad":
                outcome = FeedbackOutcome.INVALID
            elif self.late.get(i.request_id, 0) > 0:
                self.late[i.request_id] -= 1
                outcome = FeedbackOutcome.UNKNOWN
            else:
                outcome = FeedbackOutcome.RECORDED
                self.recorded.append(i.request_id)
            acks.append(FeedbackAck(request_id=i.request_id, outcome=outcome))
        return acks


async def test_the_sender_batches_in_order_and_acknowledges_each_once():
    router, acked = _Router(), []
    sender = FeedbackSender(router.send, acked.append, batch=100)
    rids = [f"r{i}" for i in range(450)]
    for rid in rids:
        sender.put(rid, 1.0)
    await sender.close()
    assert router.recorded == rids and acked == rids  # each once, in the order released
    assert len(router.calls) <= 6  # one call per batch, not one per score
    assert sender.sent == 450 and sender.failed == 0


async def test_unknown_ids_are_asked_again_without_holding_up_the_rest():
    router, acked = _Router(late={"r1": 2}), []
    sender = FeedbackSender(router.send, acked.append, retry_s=0.01)
    sender.put("r1", 1.0)
    sender.put("r2", 0.0)
    sender.put("bad", 1.0)
    await sender.close()
    assert sorted(acked) == ["r1", "r2"] and acked[0] == "r2"
    assert sum(c.count("r1") for c in router.calls) == 3  # unknown twice, then recorded
    assert sender.failed == 1  # the invalid one, dropped at once
    assert sum(c.count("bad") for c in router.calls) == 1


async def test_a_failed_call_is_retried_and_unknown_ids_are_given_up_in_the_end():
    router, acked = _Router(late={"never": 10**6}, down=True), []
    sender = FeedbackSender(router.send, acked.append, retry_s=0.01, give_up_s=0.2)
    sender.put("r1", 1.0)
    sender.put("never", 1.0)
    await asyncio.wait_for(sender.close(), 10)
    assert acked == ["r1"] and router.recorded == ["r1"]
    assert sender.failed == 1 and sender.sent == 1


@pytest.mark.parametrize("n", [0, 1])
async def test_close_returns_with_nothing_or_little_queued(n):
    router, acked = _Router(), []
    sender = FeedbackSender(router.send, acked.append)
    for i in range(n):
        sender.put(f"r{i}", 1.0)
    await asyncio.wait_for(sender.close(), 10)
    assert len(acked) == n
