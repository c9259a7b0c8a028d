"""CircuitBreaker state machine with a fake clock (plain numbers for `now`)."""

from __future__ import annotations

import math

import pytest

from actors.config import BreakerSpec
from actors.core.breaker import BreakerState, CircuitBreaker
from actors.core.errors import PROVIDER_FAULT, ErrorClass

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
FAIL = ErrorClass.SERVER


def spec(**kw) -> BreakerSpec:
    base = dict(
        failure_rate=0.5,
        min_requests=10,
        consecutive_failures=5,
        window_s=30.0,
        open_s=15.0,
        max_open_s=120.0,
        half_open_probes=2,
        probe_successes=2,
    )
    return BreakerSpec(**(base | kw))


def fail(
    b: CircuitBreaker, now: float, n: int = 1, *, error_class: ErrorClass = FAIL, **kw
) -> None:
    for _ in range(n):
        b.record(False, now, error_class=error_class, **kw)


def open_breaker(b: CircuitBreaker, now: float = 0.0) -> None:
    fail(b, now, b.spec.consecutive_failures)
    assert b.state(now) is OPEN


def test_starts_closed_and_allows():
    b = CircuitBreaker(spec())
    assert b.state(0.0) is CLOSED
    assert all(b.allow(t) for t in range(100))
    assert b.open_until is None
    assert b.transitions == []


def test_consecutive_failures_open():
    b = CircuitBreaker(spec(consecutive_failures=3, min_requests=100))
    fail(b, 1.0, 2)
    assert b.state(1.0) is CLOSED
    fail(b, 2.0)
    assert b.state(2.0) is OPEN
    assert not b.allow(2.0)
    assert b.open_until == pytest.approx(17.0)
    assert b.reason == "consecutive_failures"


def test_success_resets_consecutive_count():
    b = CircuitBreaker(spec(consecutive_failures=3, min_requests=100))
    for t in range(20):
        fail(b, t, 2)
        b.record(True, t)
    assert b.state(20.0) is CLOSED


def test_failure_rate_opens_only_with_min_requests():
    b = CircuitBreaker(spec(min_requests=10, consecutive_failures=100, failure_rate=0.5))
    for i in range(4):  # F S F S F S F S : 4/8 failed, below min_requests
        fail(b, i)
        b.record(True, i)
    assert b.state(5.0) is CLOSED
    b.record(True, 5.0)  # 4/9
    fail(b, 5.0)  # 5/10 = 0.5 >= 0.5 with 10 requests
    assert b.state(5.0) is OPEN
    assert b.reason == "failure_rate"


def test_failure_rate_below_threshold_stays_closed():
    b = CircuitBreaker(spec(min_requests=10, consecutive_failures=100, failure_rate=0.5))
    for i in range(100):
        b.record(True, i * 0.1)
        b.record(True, i * 0.1)
        fail(b, i * 0.1)  # 1/3 failed
    assert b.state(10.0) is CLOSED


def test_old_outcomes_leave_the_window():
    b = CircuitBreaker(spec(min_requests=10, consecutive_failures=100, window_s=30.0))
    fail(b, 0.0, 4)
    for _ in range(5):
        b.record(True, 0.0)
    # 4/9 failed at t=0; those fall out of the window by t=30
    assert b.snapshot(29.0)["window_requests"] == 9
    assert b.snapshot(30.0)["window_requests"] == 0
    fail(b, 31.0)  # would be 5/10 = 0.5 with the old outcomes; alone it is 1/1 < min_requests
    assert b.state(31.0) is CLOSED


def test_same_failures_inside_the_window_open():
    b = CircuitBreaker(spec(min_requests=10, consecutive_failures=100, window_s=30.0))
    fail(b, 0.0, 4)
    for _ in range(5):
        b.record(True, 0.0)
    fail(b, 29.0)
    assert b.state(29.0) is OPEN


@pytest.mark.parametrize(
    "cls", [ErrorClass.BAD_REQUEST, ErrorClass.CONTEXT_TOO_LONG, ErrorClass.BUDGET_EXCEEDED]
)
def test_callers_faults_do_not_count(cls):
    assert cls not in PROVIDER_FAULT
    b = CircuitBreaker(spec(consecutive_failures=2, min_requests=2))
    fail(b, 0.0, 50, error_class=cls)
    assert b.state(0.0) is CLOSED
    assert b.snapshot(0.0)["window_requests"] == 0
    assert b.snapshot(0.0)["consecutive_failures"] == 0


@pytest.mark.parametrize("cls", sorted(PROVIDER_FAULT - {ErrorClass.AUTH}))
def test_provider_faults_count(cls):
    b = CircuitBreaker(spec(consecutive_failures=2))
    fail(b, 0.0, 2, error_class=cls)
    assert b.state(0.0) is OPEN


def test_unclassified_failure_counts():
    b = CircuitBreaker(spec(consecutive_failures=2))
    b.record(False, 0.0)
    b.record(False, 0.0)
    assert b.state(0.0) is OPEN


def test_open_then_half_open_after_open_s():
    b = CircuitBreaker(spec(open_s=15.0))
    open_breaker(b, 100.0)
    assert not b.allow(114.9)
    assert b.state(114.9) is OPEN
    assert b.state(115.0) is HALF
    assert b.open_until is None
    assert [(f, t) for _, f, t in b.transitions] == [(CLOSED, OPEN), (OPEN, HALF)]


def test_half_open_limits_outstanding_probes():
    b = CircuitBreaker(spec(half_open_probes=2))
    open_breaker(b)
    assert b.allow(15.0)
    assert b.allow(15.0)
    assert not b.allow(15.0)
    assert b.probes_outstanding == 2
    b.record(True, 16.0)  # one probe done: a slot frees
    assert b.allow(16.0)
    assert not b.allow(16.0)


def test_probe_successes_close():
    b = CircuitBreaker(spec(probe_successes=2))
    open_breaker(b)
    assert b.allow(15.0) and b.allow(15.0)
    b.record(True, 16.0)
    assert b.state(16.0) is HALF
    b.record(True, 16.5)
    assert b.state(16.5) is CLOSED
    assert b.allow(16.5)
    assert b.transitions[-1][1:] == (HALF, CLOSED)
    # history was cleared: needs a full fresh run of failures to reopen
    fail(b, 17.0, b.spec.consecutive_failures - 1)
    assert b.state(17.0) is CLOSED


def test_failed_probe_reopens_with_doubled_duration_capped():
    b = CircuitBreaker(spec(open_s=15.0, max_open_s=50.0))
    open_breaker(b, 0.0)
    now = 0.0
    expected = [30.0, 50.0, 50.0]  # 15 → 30 → 60 capped at 50
    for dur in [15.0, *expected][:-1]:
        now += dur
        assert b.allow(now)
        fail(b, now)
        assert b.state(now) is OPEN
        assert b.reason == "probe_failed"
    durations = []
    for _ in range(2):
        until = b.open_until
        durations.append(until - now)
        now = until
        assert b.allow(now)
        fail(b, now)
    assert durations == [50.0, 50.0]


def test_backoff_resets_after_close():
    b = CircuitBreaker(spec(open_s=10.0, probe_successes=1))
    open_breaker(b, 0.0)
    assert b.allow(10.0)
    fail(b, 10.0)  # reopen for 20
    assert b.open_until == 30.0
    assert b.allow(30.0)
    b.record(True, 30.0)
    assert b.state(30.0) is CLOSED
    open_breaker(b, 40.0)
    assert b.open_until == 50.0


def test_retry_after_extends_open_capped():
    b = CircuitBreaker(spec(open_s=15.0, max_open_s=120.0, consecutive_failures=1))
    b.record(False, 0.0, error_class=ErrorClass.RATE_LIMITED, retry_after=40.0)
    assert b.open_until == 40.0
    b.reset(0.0)
    b.record(False, 0.0, error_class=ErrorClass.RATE_LIMITED, retry_after=1000.0)
    assert b.open_until == 120.0
    b.reset(0.0)
    b.record(False, 0.0, error_class=ErrorClass.RATE_LIMITED, retry_after=2.0)
    assert b.open_until == 15.0  # shorter Retry-After never shortens open_s


def test_straggler_retry_after_while_open_pushes_reopen_later():
    b = CircuitBreaker(spec(open_s=15.0, consecutive_failures=1))
    fail(b, 0.0)
    b.record(False, 5.0, error_class=ErrorClass.RATE_LIMITED, retry_after=30.0)
    assert b.open_until == 35.0
    b.record(True, 6.0)  # a late success does not close an open breaker
    assert b.state(6.0) is OPEN


def test_auth_opens_until_manual_reset():
    b = CircuitBreaker(spec())
    b.record(False, 0.0, error_class=ErrorClass.AUTH)
    assert b.state(0.0) is OPEN
    assert b.open_until == math.inf
    assert b.reason == "auth"
    assert not b.allow(1e9)
    assert b.state(1e9) is OPEN
    snap = b.snapshot(1e9)
    assert snap["manual_reset"] is True and snap["open_until"] is None
    b.reset(1e9)
    assert b.state(1e9) is CLOSED
    assert b.allow(1e9)


def test_auth_during_half_open_needs_reset():
    b = CircuitBreaker(spec())
    open_breaker(b)
    assert b.allow(15.0)
    b.record(False, 15.0, error_class=ErrorClass.AUTH)
    assert b.state(1e6) is OPEN


def test_release_probe_unwedges_half_open():
    b = CircuitBreaker(spec(half_open_probes=1))
    open_breaker(b)
    assert b.allow(15.0)
    assert not b.allow(15.0)
    b.release_probe()
    assert b.allow(15.0)


def test_abandoned_probe_expires():
    b = CircuitBreaker(spec(half_open_probes=1), probe_timeout_s=60.0)
    open_breaker(b)
    assert b.allow(15.0)
    assert not b.allow(74.0)
    assert b.allow(75.0)


def test_callers_fault_releases_probe_without_counting():
    b = CircuitBreaker(spec(half_open_probes=1, probe_successes=1))
    open_breaker(b)
    assert b.allow(15.0)
    b.record(False, 15.0, error_class=ErrorClass.BAD_REQUEST)
    assert b.state(15.0) is HALF
    assert b.allow(15.0)
    b.record(True, 15.5)
    assert b.state(15.5) is CLOSED


def test_release_probe_outside_half_open_is_noop():
    b = CircuitBreaker(spec())
    b.release_probe()
    assert b.state(0.0) is CLOSED
    assert b.probes_outstanding == 0


def test_transitions_are_bounded_but_counted():
    b = CircuitBreaker(spec(consecutive_failures=1, open_s=1.0, max_open_s=1.0), max_transitions=5)
    now = 0.0
    for _ in range(10):
        fail(b, now)  # closed/half → open
        now += 1.0
        b.state(now)  # open → half
    assert len(b.transitions) == 5
    assert b.transition_count == 20
    assert b.transitions[-1] == (10.0, OPEN, HALF)


def test_snapshot_is_compact_and_plain():
    b = CircuitBreaker(spec(consecutive_failures=100, min_requests=100))
    b.record(True, 0.0)
    fail(b, 0.0)
    snap = b.snapshot(1.0)
    assert snap == {
        "state": "closed",
        "open_until": None,
        "manual_reset": False,
        "reason": None,
        "window_requests": 2,
        "window_failures": 1,
        "failure_rate": 0.5,
        "consecutive_failures": 1,
        "probes_outstanding": 0,
        "transitions": 0,
    }
    open_breaker(b, 2.0)
    snap = b.snapshot(3.0)
    assert snap["state"] == "open" and snap["open_until"] == 17.0 and snap["transitions"] == 1


def test_state_is_strenum():
    assert BreakerState("half_open") is HALF
    assert f"{OPEN}" == "open"
