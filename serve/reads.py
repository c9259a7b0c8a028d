"""A thread pool of its own for the replica's report and audit reads.

Serve's replica health check (`RouterIngress.check_health`) runs its probe on the event
loop's default executor, the one `asyncio.to_thread` uses. Reads that may block for long —
`audit(id)` and `feedback` wait for the router to flush its records, cost reports aggregate
over a window — run here instead, so a burst of slow reads never queues a health check
behind it (a replica that misses its checks is restarted).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_PREFIX = "llm-router-reads"
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix=THREAD_PREFIX)


async def read(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the reads pool, awaited from the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))
