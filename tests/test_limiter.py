"""RateLimits (pure core, fake clock) and AsyncLimiter (asyncio, fake or real clock).

The window checks are independent of the implementation: every start is logged and every
60-second window is recounted from the log.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
from dataclasses import dataclass

import pytest

from actors.config import load_config
from actors.core.errors import ErrorClass, ProviderError
from actors.core.limiter import WINDOW_S, AsyncLimiter, Lease, RateLimits

BIG = 10**12


@dataclass
class Start:
    t: float
    reserved: int
    actual: int | None = None
    released_at: float = math.inf


def assert_windows(starts: list[Start], rpm: int, tpm: int) -> None:
    """In every window (g-60, g] ending at a start g: ≤ rpm starts, and ≤ tpm tokens counting
    each start as the limiter had to at time g (actual once released, else reserved)."""
    starts = sorted(starts, key=lambda s: s.t)
    lo = 0
    for hi, g in enumerate(starts):
        while starts[lo].t <= g.t - WINDOW_S:
            lo += 1
        inside = starts[lo : hi + 1]
        assert len(inside) <= rpm, f"{len(inside)} starts in the 60 s before t={g.t}"
        booked = sum(s.actual if s.released_at <= g.t else s.reserved for s in inside)
        assert booked <= tpm, f"{booked} tokens in the 60 s before t={g.t}"


# -- core ---------------------------------------------------------------------------------


def test_from_spec_uses_provider_limits():
    spec = load_config().provider("mixtral")
    lim = RateLimits.from_spec(spec)
    assert (lim.rpm, lim.tpm, lim.max_concurrency, lim.name) == (300, 500000, 16, "mixtral")
    assert lim.burst == 5  # one second's worth


@pytest.mark.parametrize("kw", [dict(rpm=0), dict(tpm=0), dict(max_concurrency=0)])
def test_limits_must_be_positive(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        RateLimits(**({"rpm": 1, "tpm": 1, "max_concurrency": 1} | kw))


def test_burst_then_even_pacing():
    lim = RateLimits(rpm=600, tpm=BIG, max_concurrency=BIG, burst=10)
    assert [lim.try_acquire(1, 0.0) for _ in range(10)] == [0.0] * 10
    wait = lim.try_acquire(1, 0.0)
    assert wait == pytest.approx(0.1)
    assert lim.try_acquire(1, 0.05) == pytest.approx(0.05)
    assert lim.try_acquire(1, 0.1) == 0.0
    assert lim.try_acquire(1, 0.1) > 0.0  # no second burst without idle time


def test_refusals_do_not_consume_capacity():
    lim = RateLimits(rpm=60, tpm=BIG, max_concurrency=BIG, burst=1)
    assert lim.try_acquire(1, 0.0) == 0.0
    for i in range(100):
        assert lim.try_acquire(1, i / 200) > 0.0
    assert lim.try_acquire(1, 1.0) == 0.0


def test_steady_state_throughput_reaches_rpm():
    rpm, horizon = 600, 300.0
    lim = RateLimits(rpm=rpm, tpm=BIG, max_concurrency=BIG)
    t, starts = 0.0, []
    while t < horizon:
        wait = lim.try_acquire(1, t)
        if wait == 0.0:
            starts.append(Start(t, 1, 1, t))
            lim.release(t, 1, 1, started=t)
        else:
            assert 0.0 < wait < math.inf
            t += wait
    assert len(starts) >= 0.98 * rpm * horizon / 60
    assert_windows(starts, rpm, BIG)
    # paced: no second holds more than its share plus one burst (not a minute's quota)
    per_second: dict[int, int] = {}
    for s in starts:
        per_second[int(s.t)] = per_second.get(int(s.t), 0) + 1
    assert lim.burst == 10
    assert max(per_second.values()) <= rpm / 60 + lim.burst


def test_sliding_log_caps_rpm_even_with_full_burst():
    lim = RateLimits(rpm=100, tpm=BIG, max_concurrency=BIG, burst=100)
    t, starts = 0.0, []
    while t < 200.0:
        wait = lim.try_acquire(1, t)
        if wait == 0.0:
            starts.append(Start(t, 1))
            lim.release(t, 1, 1, started=t)
        else:
            t += wait
    assert sum(s.t == 0.0 for s in starts) == 100  # the whole burst at once...
    assert min(s.t for s in starts if s.t > 0) >= 60.0  # ...then nothing until it ages out
    assert_windows(starts, 100, BIG)


def test_tpm_waits_for_old_tokens_to_age_out():
    lim = RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG)
    assert lim.try_acquire(600, 0.0) == 0.0
    assert lim.try_acquire(300, 10.0) == 0.0
    assert lim.try_acquire(600, 20.0) == pytest.approx(40.0)  # until the 600 at t=0 expires
    assert lim.try_acquire(100, 20.0) == 0.0  # exactly 1000: allowed
    assert lim.try_acquire(1, 20.0) == pytest.approx(40.0)
    assert lim.try_acquire(600, 60.0) == 0.0


def test_release_corrects_tokens_down_to_actual():
    lim = RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG)
    assert lim.try_acquire(800, 0.0) == 0.0
    assert lim.try_acquire(800, 1.0) > 0.0
    lim.release(2.0, 800, 100, started=0.0)
    assert lim.snapshot(2.0)["tokens_in_window"] == 100
    assert lim.try_acquire(800, 2.0) == 0.0


def test_release_without_start_time_keeps_the_reservation():
    lim = RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG)
    assert lim.try_acquire(800, 0.0) == 0.0
    lim.release(2.0, 800, 100)  # cannot tell which ledger entry: stay on the safe side
    assert lim.inflight == 0
    assert lim.try_acquire(800, 2.0) > 0.0


def test_release_corrects_the_right_entry():
    lim = RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG)
    assert lim.try_acquire(400, 0.0) == 0.0
    assert lim.try_acquire(400, 30.0) == 0.0
    lim.release(31.0, 400, 0, started=30.0)
    # the t=0 entry still holds 400 until t=60; correcting it instead would wrongly free it now
    assert lim.try_acquire(700, 31.0) == pytest.approx(29.0)
    assert lim.try_acquire(600, 31.0) == 0.0


def test_actual_above_reservation_is_booked():
    lim = RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG)
    assert lim.try_acquire(100, 0.0) == 0.0
    lim.release(1.0, 100, 900, started=0.0)
    assert lim.snapshot(1.0)["tokens_in_window"] == 900
    assert lim.try_acquire(200, 1.0) > 0.0


def test_release_after_entry_expired_is_harmless():
    lim = RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG)
    assert lim.try_acquire(500, 0.0) == 0.0
    lim.release(90.0, 500, 10, started=0.0)
    snap = lim.snapshot(90.0)
    assert snap["tokens_in_window"] == 0 and snap["inflight"] == 0


def test_a_start_counts_from_when_the_request_went_out():
    """Granted at 0 but on the wire only at 1.5 (a new connection, a stalled event loop):
    the provider counts it from 1.5, so the log must too."""
    lim = RateLimits(rpm=2, tpm=1000, max_concurrency=BIG, burst=2)
    assert lim.try_acquire(100, 0.0) == 0.0
    assert lim.try_acquire(100, 0.0) == 0.0
    assert lim.sent(1.5, 100, started=0.0) == 1.5
    assert lim.sent(1.6, 100, started=99.0) == 99.0  # unknown start: nothing to move
    lim.release(2.0, 100, 10, started=1.5)  # found under its new start
    assert lim.snapshot(2.0)["tokens_in_window"] == 110
    assert lim.try_acquire(1, 59.0) == pytest.approx(1.0)  # until the one sent at 0 ages out
    assert lim.try_acquire(1, 60.0) == 0.0
    assert lim.try_acquire(1, 60.0) == pytest.approx(1.5)  # the other counts from 1.5, not 0
    assert lim.try_acquire(1, 61.5) == 0.0


def test_concurrency_waits_for_release():
    lim = RateLimits(rpm=BIG, tpm=BIG, max_concurrency=2)
    assert lim.try_acquire(1, 0.0) == 0.0
    assert lim.try_acquire(1, 0.0) == 0.0
    assert lim.try_acquire(1, 5.0) == math.inf
    lim.release(5.0, 1, 1, started=0.0)
    assert lim.try_acquire(1, 5.0) == 0.0
    assert lim.inflight == 2


def test_impossible_requests_fail_fast():
    lim = RateLimits(rpm=10, tpm=1000, max_concurrency=1, name="tiny")
    with pytest.raises(ProviderError) as info:
        lim.try_acquire(1001, 0.0)
    assert info.value.error_class is ErrorClass.CONTEXT_TOO_LONG
    assert "1001" in str(info.value) and "1000" in str(info.value) and "tiny" in str(info.value)
    with pytest.raises(ProviderError) as info:
        lim.try_acquire(-1, 0.0)
    assert info.value.error_class is ErrorClass.BAD_REQUEST
    assert lim.inflight == 0


def test_snapshot_counts_window():
    lim = RateLimits(rpm=BIG, tpm=BIG, max_concurrency=BIG)
    lim.try_acquire(10, 0.0)
    lim.try_acquire(20, 30.0)
    assert lim.snapshot(59.0)["requests_in_window"] == 2
    snap = lim.snapshot(60.0)
    assert snap["requests_in_window"] == 1 and snap["tokens_in_window"] == 20
    assert snap["inflight"] == 2


@pytest.mark.parametrize("seed", range(5))
def test_random_load_never_breaks_limits(seed):
    """Many callers, random sizes and hold times, event-driven fake clock."""
    rng = random.Random(seed)
    rpm, tpm, conc = 120, 20_000, 4
    lim = RateLimits(rpm=rpm, tpm=tpm, max_concurrency=conc, burst=rng.choice([1, 5, 120]))
    events: list[tuple[float, int, str, int]] = []  # (time, seq, kind, caller)
    seq = 0

    def push(t: float, kind: str, caller: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, caller))

    want: dict[int, int] = {}
    held: dict[int, Start] = {}
    starts: list[Start] = []
    inflight = 0
    for c in range(30):
        want[c] = rng.randrange(1, 600)
        push(rng.uniform(0, 5), "try", c)
    while events:
        t, _, kind, c = heapq.heappop(events)
        if t > 400:
            break
        if kind == "try":
            wait = lim.try_acquire(want[c], t)
            if wait == 0.0:
                inflight += 1
                assert inflight <= conc
                held[c] = s = Start(t, want[c])
                starts.append(s)
                push(t + rng.expovariate(1 / 3.0), "done", c)
            else:
                push(t + (rng.uniform(0.1, 1.0) if math.isinf(wait) else wait), "try", c)
        else:
            s = held.pop(c)
            s.actual, s.released_at = rng.randrange(0, s.reserved + 1), t
            lim.release(t, s.reserved, s.actual, started=s.t)
            inflight -= 1
            want[c] = rng.randrange(1, 600)
            push(t + rng.expovariate(1.0), "try", c)
    assert len(starts) > 200  # the limits were actually exercised
    assert_windows(starts, rpm, tpm)


@pytest.mark.parametrize("seed", range(3))
def test_windows_hold_from_send_times_when_sends_lag_grants(seed):
    """Callers always wanting more; a third of the requests leave up to 3 s after their
    grant. Counted from when each went out, no 60 s window holds more than rpm."""
    rng = random.Random(seed)
    rpm = 60
    lim = RateLimits(rpm=rpm, tpm=BIG, max_concurrency=BIG, burst=rng.choice([1, 5, 60]))
    events: list[tuple[float, int, str, float]] = []
    for seq in range(20):
        heapq.heappush(events, (rng.uniform(0, 2), seq, "try", 0.0))
    seq, sends = 20, []
    while events:
        t, _, kind, granted = heapq.heappop(events)
        if t > 400:
            break
        seq += 1
        if kind == "try":
            wait = lim.try_acquire(1, t)
            if wait == 0.0:
                lag = rng.uniform(0.0, 3.0) if rng.random() < 0.33 else 0.0
                heapq.heappush(events, (t + lag, seq, "sent", t))
            else:
                heapq.heappush(events, (t + wait, seq, "try", 0.0))
        else:
            lim.release(t, 1, 1, started=lim.sent(t, 1, started=granted))
            sends.append(Start(t, 1))
            heapq.heappush(events, (t + 0.2, seq, "try", 0.0))
    assert len(sends) > 300  # the rpm limit was binding
    assert_windows(sends, rpm, BIG)


# -- asyncio wrapper ----------------------------------------------------------------------


class FakeClock:
    """Time moves only when someone sleeps; concurrent sleepers share the advance."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, d: float) -> None:
        self.sleeps += 1
        target = self.t + d
        await asyncio.sleep(0)
        self.t = max(self.t, target)


async def test_concurrency_never_exceeded_with_many_tasks():
    limiter = AsyncLimiter(RateLimits(rpm=BIG, tpm=BIG, max_concurrency=5))
    peak = 0
    done = 0

    async def worker(i: int) -> None:
        nonlocal peak, done
        async with await limiter.acquire(10) as lease:
            peak = max(peak, limiter.inflight)
            assert limiter.inflight <= 5
            for _ in range(i % 4 + 1):
                await asyncio.sleep(0)
            lease.actual_tokens = 3
        done += 1

    await asyncio.gather(*(worker(i) for i in range(300)))
    assert done == 300
    assert peak == 5
    assert limiter.inflight == 0 and limiter.waiting == 0


async def test_fifo_order():
    limiter = AsyncLimiter(RateLimits(rpm=BIG, tpm=BIG, max_concurrency=1))
    gate = await limiter.acquire(1)
    order: list[int] = []

    async def worker(i: int) -> None:
        lease = await limiter.acquire(1)
        order.append(i)
        await asyncio.sleep(0)
        lease.release(1)

    tasks = [asyncio.create_task(worker(i)) for i in range(20)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert limiter.waiting == 20
    gate.release()
    await asyncio.gather(*tasks)
    assert order == list(range(20))


async def test_large_request_is_not_starved_by_small_ones():
    clock = FakeClock()
    limiter = AsyncLimiter(
        RateLimits(rpm=BIG, tpm=1000, max_concurrency=BIG), clock, sleep=clock.sleep
    )
    first = await limiter.acquire(600)
    first.release(600)
    got: list[str] = []

    async def take(name: str, tokens: int) -> None:
        lease = await limiter.acquire(tokens)
        got.append(name)
        lease.release(tokens)

    big = asyncio.create_task(take("big", 1000))
    await asyncio.sleep(0)
    smalls = [asyncio.create_task(take(f"s{i}", 100)) for i in range(4)]
    await asyncio.gather(big, *smalls)
    assert got[0] == "big"  # the smalls would fit earlier (400 free) but queue behind it


async def test_async_windows_hold_under_fake_clock():
    clock = FakeClock()
    rpm, tpm = 60, 5000
    limiter = AsyncLimiter(
        RateLimits(rpm=rpm, tpm=tpm, max_concurrency=3), clock, sleep=clock.sleep
    )
    rng = random.Random(11)
    starts: list[Start] = []

    async def worker() -> None:
        for _ in range(6):
            want = rng.randrange(1, 1500)
            async with await limiter.acquire(want) as lease:
                assert limiter.inflight <= 3
                s = Start(lease.started, want)
                starts.append(s)
                await clock.sleep(rng.uniform(0.1, 5.0))
                s.actual, s.released_at = rng.randrange(0, want + 1), clock()
                lease.actual_tokens = s.actual

    await asyncio.gather(*(worker() for _ in range(20)))
    assert len(starts) == 120
    assert_windows(starts, rpm, tpm)
    assert clock() >= 60.0  # 120 starts at rpm=60 cannot fit in one minute


async def test_deadline_raises_without_consuming_capacity():
    clock = FakeClock()
    limiter = AsyncLimiter(
        RateLimits(rpm=BIG, tpm=BIG, max_concurrency=1), clock, sleep=clock.sleep
    )
    holder = await limiter.acquire(1)
    with pytest.raises(ProviderError) as info:
        await limiter.acquire(1, deadline=clock() + 2.0)
    assert info.value.error_class is ErrorClass.DEADLINE
    assert clock() >= 2.0
    assert limiter.inflight == 1 and limiter.waiting == 0
    holder.release()
    lease = await limiter.acquire(1, deadline=clock() + 1.0)
    assert limiter.inflight == 1
    lease.release()


async def test_deadline_known_unreachable_fails_at_once():
    clock = FakeClock()
    limiter = AsyncLimiter(RateLimits(rpm=1, tpm=BIG, max_concurrency=9), clock, sleep=clock.sleep)
    (await limiter.acquire(1)).release()
    with pytest.raises(ProviderError) as info:
        await limiter.acquire(1, deadline=10.0)  # the next start is 60 s away
    assert info.value.error_class is ErrorClass.DEADLINE
    assert clock.sleeps == 0 and clock() == 0.0
    assert limiter.limits.snapshot(0.0)["requests_in_window"] == 1


async def test_deadline_of_head_wakes_the_next_waiter():
    clock = FakeClock()
    limiter = AsyncLimiter(
        RateLimits(rpm=BIG, tpm=BIG, max_concurrency=1), clock, sleep=clock.sleep
    )
    holder = await limiter.acquire(1)
    doomed = asyncio.create_task(limiter.acquire(1, deadline=1.0))
    patient = asyncio.create_task(limiter.acquire(1))
    with pytest.raises(ProviderError):
        await doomed
    holder.release()
    lease = await asyncio.wait_for(patient, timeout=5)
    assert isinstance(lease, Lease) and limiter.waiting == 0


async def test_cancelled_waiter_leaves_the_queue():
    limiter = AsyncLimiter(RateLimits(rpm=BIG, tpm=BIG, max_concurrency=1))
    holder = await limiter.acquire(1)
    first = asyncio.create_task(limiter.acquire(1))
    second = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)
    assert limiter.waiting == 2
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert limiter.waiting == 1
    holder.release()
    lease = await asyncio.wait_for(second, timeout=5)
    assert limiter.inflight == 1
    lease.release()
    assert limiter.inflight == 0


async def test_lease_release_is_idempotent_and_corrects_tokens():
    clock = FakeClock()
    limiter = AsyncLimiter(
        RateLimits(rpm=BIG, tpm=1000, max_concurrency=4), clock, sleep=clock.sleep
    )
    lease = await limiter.acquire(900)
    lease.release(50)
    lease.release(50)
    assert limiter.inflight == 0
    snap = limiter.snapshot()
    assert snap["tokens_in_window"] == 50 and snap["waiting"] == 0
    async with await limiter.acquire(900):
        assert limiter.inflight == 1
    assert limiter.inflight == 0


async def test_lease_sent_moves_its_start_and_release_still_finds_it():
    clock = FakeClock()
    limiter = AsyncLimiter(RateLimits(rpm=BIG, tpm=1000, max_concurrency=4), clock,
                           sleep=clock.sleep)
    lease = await limiter.acquire(900)
    clock.t = 2.0
    lease.sent()
    assert lease.started == 2.0
    lease.release(50)
    lease.sent()  # after release: a no-op
    assert lease.started == 2.0 and limiter.snapshot()["tokens_in_window"] == 50


async def test_acquire_rejects_impossible_request_immediately():
    limiter = AsyncLimiter(RateLimits(rpm=10, tpm=100, max_concurrency=1))
    with pytest.raises(ProviderError) as info:
        await limiter.acquire(101, deadline=None)
    assert info.value.error_class is ErrorClass.CONTEXT_TOO_LONG
    assert limiter.waiting == 0


async def test_live_requests_go_ahead_of_queued_batch_work():
    from actors.core.limiter import AsyncLimiter, RateLimits

    lim = AsyncLimiter(RateLimits(rpm=100_000, tpm=10**9, max_concurrency=1))
    first = await lim.acquire(1)
    order: list[str] = []

    async def take(name: str, priority: str) -> None:
        lease = await lim.acquire(1, priority=priority)
        order.append(name)
        lease.release()

    tasks = [asyncio.ensure_future(take(f"b{i}", "batch")) for i in range(3)]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.ensure_future(take("live", "live")))
    await asyncio.sleep(0.01)
    assert lim.waiting == 4 and lim.waiting_batch == 3
    first.release()
    await asyncio.gather(*tasks)
    assert order[0] == "live" and order[1:] == ["b0", "b1", "b2"]


def test_provider_limits_keep_a_margin_over_the_providers_window():
    """Starts we let go 60.0 s apart can land inside one provider window; from_spec's
    limits never put more than rpm starts in any 61 s."""
    from actors.config import load_config
    from actors.core.limiter import MARGIN_S, RateLimits

    spec = load_config().provider("mixtral").model_copy(update={"rpm": 120})
    lim = RateLimits.from_spec(spec)
    starts, t = [], 0.0
    while t < 300:
        if lim.try_acquire(1, t) == 0.0:
            starts.append(t)
            lim.release(t, 1, 1, started=t)
        t += 0.01
    window = 60.0 + MARGIN_S
    worst = max(sum(1 for s in starts if a <= s < a + window) for a in starts)
    assert worst <= 120
    assert len(starts) >= 0.97 * 120 * 300 / 60  # still ≈ the full rate
