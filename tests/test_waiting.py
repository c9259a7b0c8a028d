"""The one wait helper: a predicate's own assertion fails the test at once, and a timeout
names what was awaited as it stands at the end."""

from __future__ import annotations

import pytest

from tests.waiting import async_wait_until, wait_until


def test_a_failing_assertion_inside_the_predicate_is_not_swallowed():
    calls = []

    def pred() -> bool:
        calls.append(1)
        raise AssertionError("the real failure")

    with pytest.raises(AssertionError, match="the real failure"):
        wait_until(pred, timeout=60)
    assert len(calls) == 1  # not retried until the timeout


def test_the_value_is_returned_and_a_timeout_names_what_lazily():
    seen = iter([0, 0, 7])
    assert wait_until(lambda: next(seen), timeout=5, every=0) == 7
    state = {"log": "starting"}

    def pred() -> bool:
        state["log"] = "still starting"
        return False

    with pytest.raises(AssertionError, match="server ready: still starting not reached"):
        wait_until(pred, timeout=0, what=lambda: f"server ready: {state['log']}")


async def test_the_async_twin_keeps_the_same_rules():
    def pred() -> bool:
        raise AssertionError("boom")

    with pytest.raises(AssertionError, match="boom"):
        await async_wait_until(pred, timeout=60)
    assert await async_wait_until(lambda: "yes", timeout=1) == "yes"
