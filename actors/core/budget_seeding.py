"""A (re)started router's budgets start from the spend already recorded, not from zero.

At start every scope with a limit (`*` and each provider's cap) is seeded with what the
audit trail holds for this hour and day — of this router's kind only: real budgets never
count simulated spend — plus what a dead predecessor left in flight at each provider
(booked at its worst case: never under-counted). A provider cap added at run time is
seeded the same way when it appears. Plain asyncio: the tracker's and the providers'
answers come through injected calls, so it is tested without Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from actors.core.budget import BudgetLedger

log = logging.getLogger(__name__)

#: (since, provider or None for every provider, simulated) → USD recorded since then.
SpendSince = Callable[[float, str | None, bool], Awaitable[float]]
#: → USD each provider has in flight or orphaned (not yet in the audit trail).
Pending = Callable[[], Awaitable[dict[str, float]]]


class BudgetSeeding:
    """Seeds a ledger's scopes once each; `seeded` says which are done."""

    def __init__(self, ledger: BudgetLedger, spend_since: SpendSince, pending: Pending,
                 simulated: bool, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self._spend_since = spend_since
        self._pending = pending
        self._simulated = simulated
        self._clock = clock
        self.started = False
        self.seeded: set[str] = set()

    async def at_start(self) -> None:
        """Every limited scope, once: the pending spend first (it may reach the trail next)."""
        if self.started:
            return
        self.started = True
        pending = await self._pending()
        await self.scopes(["*", *self.ledger.spec.per_provider], pending)

    async def new_scopes(self) -> None:
        """Provider caps added since start: count what those providers already spent."""
        fresh = {*self.ledger.spec.per_provider} - self.seeded
        if fresh:
            await self.scopes(sorted(fresh))

    async def scopes(self, scopes: Iterable[str], pending: dict[str, float] | None = None) -> None:
        """Book the spend recorded so far in this hour and day against these scopes; with
        the tracker unreachable they start from zero, and the log says so."""
        scopes = list(scopes)
        self.seeded.update(scopes)
        pending = pending or {}
        try:
            now = self._clock()
            for window in ("hourly", "daily"):
                since = self.ledger.window_start(window, now)
                for scope in scopes:
                    spent = await self._spend_since(since, None if scope == "*" else scope,
                                                    self._simulated)
                    extra = sum(pending.values()) if scope == "*" else pending.get(scope, 0.0)
                    self.ledger.seed(scope, window, float(spent) + extra, now)
        except Exception as exc:  # tracker not there yet: start from zero, say so
            log.warning("could not seed budgets from the tracker: %s", exc)
