"""Streaming channel calls over the same-node socket, without Ray: a fake handle, a real
Unix socket. A stream that ended leaves its connection for the next stream (no connect,
accept or handshake before the callee sees the call); one left early closes it, which
cancels the callee's streamer."""

from __future__ import annotations

import asyncio

import pytest

import actors.rpc.localsock as localsock
from actors.rpc.channel import ChannelClient
from tests.test_channel import Echo, Handle
from tests.waiting import async_wait_until


class Counter(Echo):
    """Streams `n` values (0..n-1), then a last "reply"; records starts and cancellations."""

    def __init__(self, gap: float = 0.0) -> None:
        super().__init__()
        self.gap = gap
        self.started = 0
        self.cancelled = 0

    async def _chan_stream_gen(self, n: int):
        self.started += 1
        try:
            for i in range(n):
                if self.gap:
                    await asyncio.sleep(self.gap)
                yield i
            if n < 0:
                raise ValueError("negative")
            yield "reply"
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise

    def _chan_stream(self, item):
        return self._chan_stream_gen(item)


@pytest.fixture
def accepted(monkeypatch) -> list:
    """Connections the callee accepted (each one: an accept, a task, a token check)."""
    seen: list = []
    made = localsock._ServerConn.connection_made

    def counting(self, transport):
        seen.append(self)
        made(self, transport)

    monkeypatch.setattr(localsock._ServerConn, "connection_made", counting)
    return seen


async def _drain(ch: ChannelClient, n: int) -> list:
    return [v async for v in ch.stream(n)]


async def test_streams_one_after_another_share_one_connection(accepted):
    h = Handle(Counter())
    ch = ChannelClient(h, "counter")
    for _ in range(5):
        assert await _drain(ch, 3) == [0, 1, 2, "reply"]
    # The first stream connects (plus the channel's own call socket); the rest reuse it.
    assert len(accepted) == 2 and len(ch.stream_conns) == 1
    assert h.server.started == 5 and h.server.cancelled == 0
    ch.close()
    assert len(ch.stream_conns) == 0
    h.server._chan_sock.close()


async def test_stopping_at_the_last_value_still_keeps_the_connection(accepted):
    """The router stops reading at the provider's reply; the end follows in the same frame."""
    h = Handle(Counter())
    ch = ChannelClient(h, "counter")
    for _ in range(3):
        source = ch.stream(2)
        async for v in source:
            if v == "reply":
                break
        await source.aclose()
    assert len(accepted) == 2 and len(ch.stream_conns) == 1
    assert h.server.cancelled == 0
    ch.close()
    h.server._chan_sock.close()


async def test_a_stream_left_early_closes_its_connection_and_cancels_the_callee(accepted):
    h = Handle(Counter(gap=0.01))
    ch = ChannelClient(h, "counter")
    source = ch.stream(1000)
    assert await anext(source) == 0
    await source.aclose()
    await async_wait_until(lambda: h.server.cancelled == 1, 5, what="callee cancelled")
    assert len(ch.stream_conns) == 0
    assert await _drain(ch, 2) == [0, 1, "reply"]  # a new connection for the next one
    assert len(accepted) == 3
    ch.close()
    h.server._chan_sock.close()


async def test_an_error_ends_the_stream_and_the_connection_carries_the_next(accepted):
    h = Handle(Counter())
    ch = ChannelClient(h, "counter")
    with pytest.raises(ValueError, match="negative"):
        await _drain(ch, -1)
    assert await _drain(ch, 1) == [0, "reply"]
    assert len(accepted) == 2
    ch.close()
    h.server._chan_sock.close()


async def test_a_kept_connection_whose_callee_went_away_is_not_reused(accepted):
    h = Handle(Counter())
    ch = ChannelClient(h, "counter")
    assert await _drain(ch, 1) == [0, "reply"]
    kept = ch.stream_conns._idle[0][1]
    for conn in accepted:  # the callee drops its connections (e.g. it is restarting)
        conn.transport.close()
    await async_wait_until(lambda: kept.closed, 5, what="kept connection closed")
    assert await _drain(ch, 1) == [0, "reply"]
    assert kept.closed and len(ch.stream_conns) == 1
    ch.close()
    h.server._chan_sock.close()


async def test_a_second_stream_on_a_busy_connection_is_refused():
    """One stream at a time per connection: a peer opening another is cut off."""
    h = Handle(Counter(gap=0.01))
    ch = ChannelClient(h, "counter")
    source = ch.stream(1000)
    assert await anext(source) == 0
    (_, conn), = [(None, c) for c in _open_conns(source)]
    conn.send_frame(localsock._dumps(localsock.StreamOpen(1)))
    await async_wait_until(lambda: h.server.cancelled == 1, 5, what="callee cancelled")
    with pytest.raises(Exception, match="lost"):
        async for _ in source:
            pass
    ch.close()
    h.server._chan_sock.close()


def _open_conns(source) -> list:
    """The connection a running stream reads from (from its generator's frame)."""
    frame = source.ag_frame
    inner = frame.f_locals["source"]
    return [inner.ag_frame.f_locals["conn"]]
