"""Waiting on a predicate with a timeout (never a bare sleep to synchronise)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _tries(predicate: Callable[[], T], timeout: float, what: str) -> Iterator[T]:
    """The predicate's values until one is truthy; AssertionError naming `what` once
    `timeout` s have passed without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        yield value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s (last: {value!r})")


def wait_until(predicate: Callable[[], T], timeout: float, every: float = 0.2,
               what: str = "condition") -> T:
    for value in _tries(predicate, timeout, what):
        if value:
            return value
        time.sleep(every)
    raise AssertionError("unreachable")


async def async_wait_until(predicate: Callable[[], T], timeout: float, every: float = 0.02,
                           what: str = "condition") -> T:
    for value in _tries(predicate, timeout, what):
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError("unreachable")
