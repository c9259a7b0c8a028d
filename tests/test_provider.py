"""The provider core without Ray: breaker → limiter → retries → real client → simulator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from actors.clients.base import Completion, Message
from actors.config import load_config
from actors.core import limiter
from actors.rpc.messages import AttemptInfo, ProviderCall, ProviderReply
from actors.shells.provider import ORPHAN_POLICY, Provider, orphan_records
from actors.simulator import quota
from actors.simulator.server import SimulatorProcess, simulator_base_url

CFG = load_config()


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(latency_scale=0.0, seed=7) as s:
        yield s


def make(sim, name="gpt-4-turbo", **spec_updates) -> Provider:
    spec = CFG.provider(name)
    if spec_updates:
        data = spec.model_dump()
        for k, v in spec_updates.items():
            if isinstance(v, dict):
                data[k] = {**data[k], **v}
            else:
                data[k] = v
        spec = type(spec).model_validate(data)
    return Provider(spec, base_url=simulator_base_url(spec.api, sim.url), simulated=True)


def call(text="Regime: bull. Trade signal?", output="text", **kw) -> ProviderCall:
    return ProviderCall(request_id="r1", output=output,
                        completion=Completion(messages=[Message(role="user", content=text)],
                                              max_tokens=kw.pop("max_tokens", 200)), **kw)


async def test_success_validates_structured_output_and_updates_window(sim):
    p = make(sim)
    reply = await p.complete(call(output="trade_signal"))
    assert reply.result and reply.parsed and reply.parsed["direction"] in ("long", "short", "flat")
    a = reply.attempts[0]
    assert a.ok and a.confidence == reply.parsed["confidence"] and a.cost_usd > 0
    snap = p.snapshot()
    assert snap.samples == 1 and snap.state == "closed" and snap.mean_confidence is not None
    status = p.status()  # for people: the rate-limit use now, beside breaker and window
    assert status["limits"]["requests_in_window"] == 1 and status["limits"]["inflight"] == 0
    assert status["limits"]["tokens_in_window"] == a.input_tokens + a.output_tokens
    await p.aclose()


async def test_invalid_output_is_an_invalid_response_that_still_costs(sim):
    sim.set_profile("gpt-4-turbo", invalid_output=1.0)
    try:
        p = make(sim)
        reply = await p.complete(call(output="trade_signal"))
    finally:
        sim.reset_profile("gpt-4-turbo")
    assert reply.result is None and reply.error_class == "invalid_response"
    assert len(reply.attempts) == 1  # not retried on the same provider: the router falls back
    assert reply.attempts[0].cost_usd > 0 and reply.attempts[0].response
    assert p.snapshot().success_rate == 0.0
    await p.aclose()


async def test_retries_then_breaker_opens_and_refuses(sim):
    sim.set_profile("gpt-4-turbo", server_error=1.0)
    try:
        p = make(sim, breaker={"consecutive_failures": 2, "open_s": 30},
                 retry={"max_attempts": 2, "base_s": 0.01, "max_s": 0.02})
        reply = await p.complete(call())
        assert [a.error_class for a in reply.attempts] == ["server", "server"]
        assert p.snapshot().state == "open" and reply.snapshot["state"] == "open"
        refused = await p.complete(call())
        assert refused.error_class == "breaker_open" and refused.attempts == []
        assert "retry in" in refused.error
        p.reset()
        assert p.snapshot().state == "closed"
    finally:
        sim.reset_profile("gpt-4-turbo")
    await p.aclose()


async def test_deadline_is_honoured(sim):
    sim.set_profile("gpt-4-turbo", timeout=1.0, hang_s=3)
    try:
        p = make(sim)
        t0 = time.monotonic()
        reply = await p.complete(call(deadline=time.time() + 0.3))
        assert reply.error_class == "deadline" and time.monotonic() - t0 < 1.5
    finally:
        sim.reset_profile("gpt-4-turbo")
    await p.aclose()


async def test_limiter_makes_callers_wait_not_fail(sim):
    p = make(sim, max_concurrency=2)
    sim.set_profile("gpt-4-turbo", base_ms=50)
    try:
        seen = []

        async def one():
            seen.append(p.limiter.inflight)
            return await p.complete(call())

        replies = await asyncio.gather(*(one() for _ in range(8)))
    finally:
        sim.reset_profile("gpt-4-turbo")
    assert all(r.result for r in replies)
    assert max(seen) <= 2
    await p.aclose()


async def test_oversize_prompt_is_refused_before_sending(sim):
    p = make(sim, "mixtral")
    sim.reset_stats()
    reply = await p.complete(call(text="x" * 200_000))
    assert reply.error_class == "context_too_long"
    assert sim.stats().totals.requests == 0
    assert p.snapshot().samples == 0  # the caller's fault: not counted against the provider
    await p.aclose()


def test_orphan_records_keep_every_billed_attempt():
    call = ProviderCall(request_id="r1", completion=Completion(
        messages=[Message(role="user", content="hi")]), attempt_offset=1)
    reply = ProviderReply(provider="llama", model="m", attempts=[
        AttemptInfo(attempt=2, ts=1.0, ok=False, error_class="server_error", cost_usd=0.0),
        AttemptInfo(attempt=3, ts=2.0, ok=True, input_tokens=10, output_tokens=5,
                    cost_usd=0.002, response="secret answer")])
    recs = orphan_records(call, reply)
    assert [(r.request_id, r.attempt, r.ok, r.cost_usd) for r in recs] == [
        ("r1", 2, False, 0.0), ("r1", 3, True, 0.002)]
    assert all(r.policy == ORPHAN_POLICY and r.provider == "llama" for r in recs)
    assert all(r.response is None and r.prompt is None for r in recs)  # text is the router's call


@contextlib.asynccontextmanager
async def local_sim(profiles: dict):
    """The simulator served on this event loop, so a test can shrink its rate window."""
    import uvicorn

    from actors.simulator.app import SimulatorApp
    from actors.simulator.engine import Simulator

    engine = Simulator(latency_scale=0.0, seed=3, overrides=profiles)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(SimulatorApp(engine), loop="none", lifespan="off",
                                           http="httptools", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.005)
    try:
        yield engine, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def test_a_stall_between_grant_and_send_earns_no_429(monkeypatch):
    """Issue 6's last 429: the event loop stalled (a first-time import) while a granted
    request was still connecting, so it reached the provider later than the limiter's log
    said; a window later the log let a start through that the provider still counted.
    Scaled down: a 2 s window, a 0.1 s margin and a 0.3 s stall."""
    monkeypatch.setattr(limiter, "WINDOW_S", 2.0)
    monkeypatch.setattr(limiter, "MARGIN_S", 0.1)
    monkeypatch.setattr(quota, "WINDOW_S", 2.0)
    async with local_sim({"gpt-4-turbo": {"rpm": 2, "base_ms": 0}}) as (engine, url):
        spec = CFG.provider("gpt-4-turbo").model_copy(update={
            "rpm": 2, "retry": CFG.provider("gpt-4-turbo").retry.model_copy(
                update={"max_attempts": 1})})
        p = Provider(spec, base_url=simulator_base_url(spec.api, url), simulated=True)
        # Runs at the first await after the grant: while the new connection is being made.
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        replies = [await p.complete(call()) for _ in range(3)]  # the 3rd waits for the 1st
        await p.aclose()
    stats = engine.stats.snapshot().models["gpt-4-turbo"]
    assert stats.rate_limited_by_limit == 0 and stats.ok == 3
    assert all(r.result for r in replies)
