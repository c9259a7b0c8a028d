"""Realized outcomes sent to the router in batches: one actor call for many scores.

A backtest releases hundreds of scores a second (actors/backtest/feedback.py); one actor
call each cost more than routing its request from the response cache did. The router
takes a batch in order, through the same rule as a single score (`Router.feedback`:
learned at once and recorded after the request's own records, or handed to the tracker
for a request it does not remember), and acknowledges each item on its own, so one
unknown id does not hold up the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class FeedbackItem(BaseModel):
    """One realized outcome for a past request (the score is checked per item: a bad one
    is refused on its own, not with its batch)."""

    request_id: str
    score: float = Field(description="0..1, e.g. 1.0 = the trade call was right.")


class FeedbackOutcome(Enum):
    RECORDED = "recorded"
    UNKNOWN = "unknown"  # no request with this id recorded (yet): worth asking again soon
    INVALID = "invalid"  # a bad score: asking again cannot help
    FAILED = "failed"  # the tracker did not answer (restarting?): ask again later


class FeedbackAck(BaseModel):
    """What became of one item of a batch."""

    request_id: str
    outcome: FeedbackOutcome
    error: str | None = None


Learn = Callable[[str, float], Any]  # Router.feedback: None when the request is not its own
Forward = Callable[[str, float], Awaitable[None]]  # to the tracker; KeyError: unknown id


async def record_all(items: list[FeedbackItem], learn: Learn,
                     forward: Forward) -> list[FeedbackAck]:
    """Each item through `learn` in order; those it does not know go to `forward`, all at
    once. One acknowledgement per item, in the items' order."""
    acks: list[FeedbackAck | None] = [None] * len(items)
    later: list[int] = []
    for i, it in enumerate(items):
        try:
            known = learn(it.request_id, float(it.score))
        except ValueError as exc:
            acks[i] = FeedbackAck(request_id=it.request_id, outcome=FeedbackOutcome.INVALID,
                                  error=str(exc))
            continue
        if known is None:
            later.append(i)
        else:
            acks[i] = FeedbackAck(request_id=it.request_id, outcome=FeedbackOutcome.RECORDED)
    done = await asyncio.gather(*(forward(items[i].request_id, float(items[i].score))
                                  for i in later), return_exceptions=True)
    for i, res in zip(later, done, strict=True):
        acks[i] = _ack(items[i].request_id, res)
    return [a for a in acks if a is not None]


def _ack(request_id: str, res: object) -> FeedbackAck:
    if not isinstance(res, BaseException):
        return FeedbackAck(request_id=request_id, outcome=FeedbackOutcome.RECORDED)
    outcome = (FeedbackOutcome.UNKNOWN if isinstance(res, KeyError) else
               FeedbackOutcome.INVALID if isinstance(res, ValueError) else FeedbackOutcome.FAILED)
    return FeedbackAck(request_id=request_id, outcome=outcome, error=str(res)[:300])
