"""Batched channels without Ray: a fake handle runs the server mixin in the same loop."""

from __future__ import annotations

import asyncio

import pytest

from actors.rpc.channel import ChannelBroken, ChannelClient
from actors.rpc.channel_server import ChannelServer


class Echo(ChannelServer):
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def _chan_handle(self, item):
        await asyncio.sleep(self.delay)
        if item == "boom":
            raise ValueError("boom")
        return item * 2


class Method:
    def __init__(self, fn, counter: dict, name: str):
        self.fn, self.counter, self.name = fn, counter, name

    def remote(self, *args):
        self.counter[self.name] = self.counter.get(self.name, 0) + 1
        return asyncio.ensure_future(self.fn(*args))


class Handle:
    """Quacks like a Ray actor handle for the three channel methods."""

    def __init__(self, server: ChannelServer):
        self.server = server
        self.counts: dict[str, int] = {}

    def __getattr__(self, name):
        return Method(getattr(self.server, name), self.counts, name)


async def test_many_calls_ride_on_few_submits():
    h = Handle(Echo(delay=0.01))
    ch = ChannelClient(h, "echo", sockets=False)
    out = await asyncio.gather(*(ch.call(i) for i in range(200)))
    assert out == [i * 2 for i in range(200)]
    assert h.counts["chan_one"] == 1  # the very first call had nothing else in flight
    assert h.counts["chan_submit"] <= 3 and h.counts["chan_collect"] < 20
    assert ch.inflight == 0
    ch.close()


async def test_single_call_is_a_plain_call_and_errors_propagate():
    h = Handle(Echo())
    ch = ChannelClient(h, "echo", sockets=False)
    assert await ch.call(21) == 42
    assert h.counts == {"chan_one": 1}
    res = await asyncio.gather(ch.call(1), ch.call("boom"), ch.call(3), return_exceptions=True)
    assert res[0] == 2 and isinstance(res[1], ValueError) and res[2] == 6
    ch.close()


async def test_restarted_callee_fails_inflight_calls(monkeypatch):
    import actors.rpc.channel as channel

    monkeypatch.setattr(channel, "POLL_S", 0.05)

    class Stuck(Echo):  # the old instance: its work never finishes (it "died")
        async def _chan_handle(self, item):
            await asyncio.Event().wait()

    h = Handle(Stuck())
    ch = ChannelClient(h, "echo", sockets=False)
    ch._plain = 1  # force the batched path
    calls = [asyncio.ensure_future(ch.call(i)) for i in range(5)]
    await asyncio.sleep(0.02)
    h.server = Echo()  # the restarted actor: same handle, new instance id, no memory
    res = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert all(isinstance(r, ChannelBroken) and "restarted" in str(r) for r in res), res
    ch._plain = 0
    assert await ch.call(4) == 8  # and the channel works with the new instance
    ch.close()


async def test_dead_callee_fails_instead_of_hanging():
    class Dead:
        def __getattr__(self, name):
            class M:
                def remote(self, *a):
                    f = asyncio.get_running_loop().create_future()
                    f.set_exception(RuntimeError("actor died"))
                    return f
            return M()

    ch = ChannelClient(Dead(), "dead", sockets=False)
    ch._plain = 1  # force the batched path
    with pytest.raises(ChannelBroken, match="dead unavailable"):
        await asyncio.wait_for(ch.call(1), 5)


async def test_a_call_cancelled_inside_the_callee_is_a_broken_channel():
    class Cancels(Echo):
        async def _chan_handle(self, item):
            raise asyncio.CancelledError

    h = Handle(Cancels())
    ch = ChannelClient(h, "echo", sockets=False)
    ch._plain = 1  # force the batched path
    with pytest.raises(ChannelBroken, match="cancelled in the callee"):
        await asyncio.wait_for(ch.call(1), 5)
    ch._plain = 0
    ch.close()
