"""The one way tests wait: on a predicate, with a timeout (never a bare sleep to
synchronise). The predicate's own errors — an AssertionError above all — propagate at
once; a caller that expects a transient error (an actor restarting) catches exactly that
one inside its predicate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
What = str | Callable[[], str]


def _tries(predicate: Callable[[], T], timeout: float, what: What) -> Iterator[T]:
    """The predicate's values until one is truthy; AssertionError naming `what` (a callable
    is asked only then, e.g. for a server's log as it is at the end) once `timeout` s
    have passed without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        yield value
        if time.monotonic() >= deadline:
            told = what() if callable(what) else what
            raise AssertionError(f"{told} not reached within {timeout:g} s (last: {value!r})")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, *, every: float = 0.05,
               what: What = "condition") -> T:
    """Poll `predicate` until it returns something truthy (returned), or fail."""
    for value in _tries(predicate, timeout, what):
        if value:
            return value
        time.sleep(every)
    raise AssertionError("unreachable")


async def async_wait_until(predicate: Callable[[], T], timeout: float = 10.0, *,
                           every: float = 0.02, what: What = "condition") -> T:
    """The asyncio twin of `wait_until`: the event loop runs while it waits."""
    for value in _tries(predicate, timeout, what):
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError("unreachable")
