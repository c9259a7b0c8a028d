"""What becomes of a batch item that failed: one rule, over the error classes of
actors/core/errors.py (the same classification as a synchronous attempt's).

- retryable (expired, server error, rate limited, overloaded, connection): into a later
  batch, up to `batch_retries` times; after that synchronously;
- an answer that cannot be used, or another failure a synchronous request would fall back
  on (invalid response, output limit, context too long, auth): synchronously at once, where
  the router falls back to other providers;
- anything else (an invalid request): recorded as failed, never retried.
"""

from __future__ import annotations

from enum import StrEnum

from actors.core.errors import FALLBACK, RETRYABLE, ErrorClass


class Next(StrEnum):
    BATCH = "next batch"
    SYNC = "sent synchronously"
    FAIL = "failed"


def next_step(error_class: ErrorClass, tries: int, batch_retries: int) -> Next:
    """`tries`: batch jobs the item has been in so far."""
    if error_class in RETRYABLE and tries <= batch_retries:
        return Next.BATCH
    if error_class in RETRYABLE or error_class in FALLBACK:
        return Next.SYNC
    return Next.FAIL
