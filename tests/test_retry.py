"""call_with_retry with an injected sleep and clock: waits are recorded, never slept."""

from __future__ import annotations

import pytest
from tenacity import RetryError

from actors.config import RetrySpec
from actors.core.errors import FALLBACK, RETRYABLE, ErrorClass, ProviderError
from actors.core.retry import build_retrying, call_with_retry


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.waits.append(s)
        self.t += s


class Flaky:
    """Fails with the given errors in order, then returns "ok"."""

    def __init__(self, *errors: ProviderError | Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def err(cls: ErrorClass = ErrorClass.SERVER, retry_after: float | None = None) -> ProviderError:
    return ProviderError(cls, "boom", provider="p", retry_after=retry_after)


async def run(fn, spec: RetrySpec, ft: FakeTime, deadline: float | None = None, **kw):
    return await call_with_retry(fn, spec, deadline=deadline, sleep=ft.sleep, clock=ft.clock, **kw)


async def test_success_first_try_no_wait():
    ft = FakeTime()
    fn = Flaky()
    assert await run(fn, RetrySpec(max_attempts=3), ft) == "ok"
    assert fn.calls == 1 and ft.waits == []


@pytest.mark.parametrize("cls", sorted(set(ErrorClass) - RETRYABLE))
async def test_non_retryable_raises_after_one_attempt(cls):
    ft = FakeTime()
    fn = Flaky(err(cls), err(cls))
    with pytest.raises(ProviderError) as info:
        await run(fn, RetrySpec(max_attempts=5), ft)
    assert info.value.error_class is cls
    assert fn.calls == 1 and ft.waits == []


async def test_other_exceptions_are_not_retried_or_wrapped():
    ft = FakeTime()
    fn = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        await run(fn, RetrySpec(max_attempts=5), ft)
    assert fn.calls == 1


@pytest.mark.parametrize("cls", sorted(RETRYABLE))
async def test_retryable_retried_until_max_attempts_then_last_error(cls):
    ft = FakeTime()
    errors = [ProviderError(cls, f"try {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(ProviderError) as info:
        await run(fn, RetrySpec(max_attempts=4, base_s=0.1, max_s=1.0), ft)
    assert not isinstance(info.value, RetryError)
    assert info.value.message == "try 3"  # the last attempt's error, not the first
    assert fn.calls == 4
    assert len(ft.waits) == 3


async def test_recovers_after_transient_failures():
    ft = FakeTime()
    fn = Flaky(err(), err(ErrorClass.TIMEOUT))
    assert await run(fn, RetrySpec(max_attempts=3), ft) == "ok"
    assert fn.calls == 3


async def test_waits_are_full_jitter_within_cap():
    spec = RetrySpec(max_attempts=10, base_s=0.5, max_s=4.0)
    all_waits: list[list[float]] = []
    for _ in range(200):
        ft = FakeTime()
        with pytest.raises(ProviderError):
            await run(Flaky(*[err() for _ in range(10)]), spec, ft)
        assert len(ft.waits) == 9
        for i, w in enumerate(ft.waits):  # attempt i+1 → ceiling base·2^i, capped
            assert 0.0 <= w <= min(spec.max_s, spec.base_s * 2**i)
        all_waits.append(ft.waits)
    # full jitter (200 runs, so a miss is ~0.8^200): the first wait spreads over [0, base], not clustered at the ceiling
    firsts = [w[0] for w in all_waits]
    assert min(firsts) < 0.1 and max(firsts) > 0.4
    assert max(w[-1] for w in all_waits) > 3.0  # later waits reach toward the cap


async def test_retry_after_is_a_floor():
    ft = FakeTime()
    fn = Flaky(err(ErrorClass.RATE_LIMITED, retry_after=7.0), err(ErrorClass.OVERLOADED, 0.0))
    assert await run(fn, RetrySpec(max_attempts=3, base_s=0.5, max_s=1.0), ft) == "ok"
    assert ft.waits[0] == 7.0  # above the 1 s cap: the provider asked for it
    assert 0.0 <= ft.waits[1] <= 1.0


async def test_deadline_stops_before_a_wait_that_would_pass_it():
    ft = FakeTime()
    fn = Flaky(err(ErrorClass.RATE_LIMITED, retry_after=5.0), err())
    with pytest.raises(ProviderError) as info:
        await run(fn, RetrySpec(max_attempts=5), ft, deadline=3.0)
    assert info.value.error_class is ErrorClass.RATE_LIMITED  # last real error, for fallback
    assert info.value.error_class in FALLBACK
    assert fn.calls == 1 and ft.waits == []


async def test_deadline_allows_retries_that_fit():
    ft = FakeTime()
    fn = Flaky(err(ErrorClass.RATE_LIMITED, retry_after=1.0), err(ErrorClass.RATE_LIMITED, 1.0))
    assert (
        await run(fn, RetrySpec(max_attempts=5, base_s=0.0, max_s=0.0), ft, deadline=10.0) == "ok"
    )
    assert ft.waits == [1.0, 1.0]


async def test_deadline_already_passed_makes_no_attempt():
    ft = FakeTime()
    ft.t = 5.0
    fn = Flaky()
    with pytest.raises(ProviderError) as info:
        await run(fn, RetrySpec(), ft, deadline=5.0)
    assert info.value.error_class is ErrorClass.DEADLINE
    assert fn.calls == 0


async def test_on_attempt_reports_every_attempt():
    ft = FakeTime()
    seen: list[tuple[int, ErrorClass | None, float]] = []

    def on_attempt(n: int, e: ProviderError | None, wait: float) -> None:
        seen.append((n, e.error_class if e else None, wait))

    fn = Flaky(err(ErrorClass.RATE_LIMITED, retry_after=2.0))
    await run(fn, RetrySpec(max_attempts=3, base_s=0.1, max_s=0.1), ft, on_attempt=on_attempt)
    assert seen == [(1, ErrorClass.RATE_LIMITED, 2.0), (2, None, 0.0)]

    seen.clear()
    with pytest.raises(ProviderError):
        await run(Flaky(err(), err()), RetrySpec(max_attempts=2), ft, on_attempt=on_attempt)
    assert [(n, c) for n, c, _ in seen] == [(1, ErrorClass.SERVER), (2, ErrorClass.SERVER)]
    assert seen[-1][2] == 0.0


async def test_build_retrying_reraises_provider_error():
    ft = FakeTime()
    retrying = build_retrying(RetrySpec(max_attempts=2), sleep=ft.sleep, clock=ft.clock)
    fn = Flaky(err(), err())
    with pytest.raises(ProviderError):
        await retrying(fn)
    assert fn.calls == 2
