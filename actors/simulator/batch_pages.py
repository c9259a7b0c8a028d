"""Listing batch jobs a page at a time, as the vendors do (PROVIDERS.md "Batch APIs"):

- OpenAI `GET /v1/batches?limit=&after=<id>`: newest first, `limit` 1–100 (default 20),
  `{data, first_id, last_id, has_more}`.
- Anthropic `GET /v1/messages/batches?limit=&after_id=|before_id=`: newest first, `limit`
  1–1000 (default 20), the same four fields (`has_more` in the direction asked).
- Gemini `GET /v1beta/batches?pageSize=&pageToken=`: `{operations, nextPageToken}`, the
  token opaque and absent on the last page; a size out of range is coerced (AIP-158).

`BatchSettings.page_size` caps every page whatever the request asked, so a test pages
through a listing with a handful of jobs, as a client on a busy account would.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qs

from actors.simulator.batch_jobs import Job

#: (default, maximum) page size of each vendor's listing.
LIMITS = {"openai": (20, 100), "anthropic": (20, 1000), "gemini": (20, 1000)}


@dataclass
class Page:
    jobs: list[Job]
    has_more: bool


def query_of(query: str) -> dict[str, str]:
    """A query string's parameters, the first value of each."""
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def limit_of(q: dict[str, str], name: str, api: str, cap: int | None) -> int:
    """The page size asked for: out of range is a 400 (OpenAI, Anthropic) or coerced
    (Gemini); `cap` (the simulator's `page_size`) then bounds it."""
    default, most = LIMITS[api]
    raw = q.get(name, "")
    n = int(raw) if raw else default  # not a number: ValueError, a 400
    if api == "gemini":
        n = default if n <= 0 else min(n, most)
    elif not 1 <= n <= most:
        raise ValueError(f"{name} must be between 1 and {most}, got {n}")
    return min(n, cap) if cap else n


def _index(jobs: list[Job], job_id: str, name: str) -> int:
    for i, j in enumerate(jobs):
        if j.id == job_id:
            return i
    raise ValueError(f"{name}: no batch with id {job_id!r}")


def page_of(jobs: list[Job], limit: int, after: str | None = None,
            before: str | None = None, name: str = "after") -> Page:
    """`limit` jobs of `jobs` (newest first) right after the cursor `after`, or right
    before `before`; the first ones without a cursor. An unknown cursor is a ValueError
    naming the parameter (`name`), a 400."""
    if before is not None:
        end = _index(jobs, before, "before_id")
        start = max(0, end - limit)
        return Page(jobs[start:end], start > 0)
    start = _index(jobs, after, name) + 1 if after is not None else 0
    return Page(jobs[start:start + limit], start + limit < len(jobs))


def token_of(job: Job) -> str:
    """Gemini's opaque page token: the last job of the page, encoded."""
    return base64.urlsafe_b64encode(job.id.encode()).decode()


def after_token(token: str) -> str | None:
    """The job a Gemini page token continues after (None for the first page)."""
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"pageToken {token!r} is not a token this server gave") from exc
