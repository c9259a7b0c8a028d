"""A caller's view of a router restart: requests sent while it restarts wait for it.

When the router actor dies with calls in flight, those calls end as `ChannelBroken` (their
outcome is unknown; `RouterClient.aroute` records that). Calls sent *after* that, while Ray
is still restarting the actor, used to fail fast with `ActorUnavailableError`, each one
another unknown outcome: a backtest burned its bar retries (1, 2, 4 s apart) against a
router that came back a few seconds later (slower with PostgreSQL: more to open at start),
and the bars it had in flight at the kill stayed unfinished. Now a client that saw the
router go away first waits until it answers `ready` again — bounded by the request's own
timeout — and only then sends; all waiters share one probe. Plain asyncio (the probe is
passed in), so it is tested without Ray.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

#: Seconds between probes of a restarting router, and the longest one probe may take.
POLL_S, PROBE_TIMEOUT_S = 0.2, 2.0
#: The longest a request without a timeout of its own waits for a restarting router.
ROUTER_WAIT_S = 60.0


class RouterRecovery:
    """`lost()` when a call found the router gone; `await back(timeout_s)` before sending."""

    def __init__(self, probe: Callable[[], Awaitable[Any]],
                 unavailable: tuple[type[BaseException], ...], *, poll_s: float = POLL_S,
                 probe_timeout_s: float = PROBE_TIMEOUT_S) -> None:
        """`probe`: asks the router whether it is up (its `ready`); `unavailable`: the
        errors meaning "not back yet" — any other answer comes from a live router."""
        self._probe = probe
        self._unavailable = unavailable
        self.poll_s, self.probe_timeout_s = poll_s, probe_timeout_s
        self.down = False
        self._probing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                 asyncio.Future[bool]] = weakref.WeakKeyDictionary()

    def lost(self) -> None:
        self.down = True

    async def back(self, timeout_s: float) -> bool:
        """True once the router answers (at once when it was never lost); False when it
        did not within `timeout_s` (the caller sends anyway and gets Ray's error)."""
        deadline = time.monotonic() + timeout_s
        loop = asyncio.get_running_loop()
        while self.down:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            fut = self._probing.get(loop)
            if fut is None or fut.done():  # one probe loop per event loop, shared
                fut = self._probing[loop] = asyncio.ensure_future(self._until_back(left))
            try:
                await asyncio.wait_for(asyncio.shield(fut), left)
            except TimeoutError:
                return False
        return True

    async def _until_back(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(timeout_s, self.probe_timeout_s)
        while self.down:
            try:
                await asyncio.wait_for(self._probe(), self.probe_timeout_s)
            except (TimeoutError, *self._unavailable):
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(self.poll_s)
                continue
            except Exception:  # noqa: BLE001 — an error *from* the router: it is up
                pass
            self.down = False
        return True
