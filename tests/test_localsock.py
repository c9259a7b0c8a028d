"""The same-node socket path of channels, without Ray: a fake handle, a real Unix socket."""

from __future__ import annotations

import asyncio
import os
import pickle
import struct

import pytest

import actors.rpc.channel as channel
from actors.rpc.channel import ChannelBroken, ChannelClient
from actors.rpc.localsock import SocketBroken, SocketClient
from tests.test_channel import Echo, Handle
from tests.waiting import async_wait_until

TRIPPED: list[str] = []


class Trap:
    """Unpickling this records that a frame was decoded."""

    def __reduce__(self):
        return (TRIPPED.append, ("unpickled",))


class Unsendable(Echo):
    async def _chan_handle(self, item):
        if item == "lambda":
            return lambda: None  # pickle can't send it
        return await super()._chan_handle(item)


async def test_calls_go_over_the_socket_not_ray():
    h = Handle(Echo(delay=0.005))
    ch = ChannelClient(h, "echo")
    out = await asyncio.gather(*(ch.call(i) for i in range(300)))
    assert out == [i * 2 for i in range(300)]
    assert h.counts == {"chan_endpoint": 1}  # one Ray call to learn the endpoint, no more
    assert ch.counts["socket"] == 300 and ch.inflight == 0
    res = await asyncio.gather(ch.call(1), ch.call("boom"), return_exceptions=True)
    assert res[0] == 2 and isinstance(res[1], ValueError) and str(res[1]) == "boom"
    ch.close()
    h.server._chan_sock.close()


async def test_an_unpicklable_result_fails_only_its_call():
    h = Handle(Unsendable())
    ch = ChannelClient(h, "echo")
    res = await asyncio.gather(ch.call(1), ch.call("lambda"), ch.call(3),
                               return_exceptions=True)
    assert res[0] == 2 and res[2] == 6
    assert isinstance(res[1], RuntimeError) and "could not be sent back" in str(res[1])
    bad = await asyncio.gather(ch.call(lambda: None), ch.call(5), return_exceptions=True)
    assert isinstance(bad[0], TypeError) and bad[1] == 10
    ch.close()
    h.server._chan_sock.close()


async def test_wrong_token_is_refused_before_anything_is_unpickled():
    server = Echo()
    endpoint = await server.chan_endpoint()
    assert oct(os.stat(os.path.dirname(endpoint["path"])).st_mode & 0o777) == "0o700"
    assert oct(os.stat(endpoint["path"]).st_mode & 0o777) == "0o600"
    with pytest.raises(OSError, match="handshake failed"):
        await SocketClient.connect({**endpoint, "token": "0" * 64})
    # A peer that skips the token and sends a pickle straight away is cut off unread.
    reader, writer = await asyncio.open_unix_connection(endpoint["path"])
    payload = pickle.dumps(Trap())
    writer.write(struct.pack("!I", len(payload)) + payload)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the callee
    assert TRIPPED == []
    writer.close()
    server._chan_sock.close()


async def test_lost_callee_fails_inflight_calls_and_the_next_call_reconnects():
    class Stuck(Echo):
        entered = 0

        async def _chan_handle(self, item):
            Stuck.entered += 1
            await asyncio.Event().wait()

    h = Handle(Stuck())
    ch = ChannelClient(h, "echo")
    calls = [asyncio.ensure_future(ch.call(i)) for i in range(5)]
    await async_wait_until(lambda: Stuck.entered == 5, what="five calls inside the callee")
    old = h.server
    h.server = Echo()  # the restarted actor: a new socket, a new instance
    old._chan_sock.close()
    for conn in list(old._chan_sock.tasks):
        conn.cancel()
    ch._sock._conn.transport.abort()  # what the kernel does when the process dies
    res = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert all(isinstance(r, ChannelBroken) and "connection lost" in str(r) for r in res), res
    assert await ch.call(4) == 8
    assert h.counts["chan_endpoint"] == 2
    ch.close()
    h.server._chan_sock.close()


async def test_another_host_keeps_the_ray_path(monkeypatch):
    class Remote(Echo):
        async def chan_endpoint(self):
            return {**await super().chan_endpoint(), "host": "elsewhere"}

    h = Handle(Remote())
    ch = ChannelClient(h, "echo")
    assert await ch.call(21) == 42
    assert ch.counts["socket"] == 0 and h.counts["chan_one"] == 1
    assert await ch.call(1) == 2
    assert h.counts["chan_endpoint"] == 1  # not asked again before SOCKET_RETRY_S
    ch.close()
    h.server._chan_sock.close()


async def test_retired_client_closes_its_socket_when_idle():
    h = Handle(Echo(delay=0.02))
    ch = ChannelClient(h, "echo")
    assert await ch.call(1) == 2
    slow = asyncio.ensure_future(ch.call(2))
    await asyncio.sleep(0)
    ch.retire()
    assert not ch._sock.closed  # a call is still in flight
    assert await slow == 4
    await async_wait_until(lambda: ch._sock.closed, what="the retired client's socket closed")
    h.server._chan_sock.close()


async def test_socket_directories_go_when_their_actor_exits_or_is_swept_when_killed():
    """A gracefully exiting actor removes its directory (Ray calls __ray_shutdown__); a
    killed one's is swept by the next server to start — unless someone still listens on
    it, or it is too young to have a socket yet."""
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from actors.rpc.localsock import DIR_PREFIX, SocketServer, sweep_stale

    tmp_path = Path(tempfile.mkdtemp(prefix="sw"))  # short: a socket path has 108 bytes

    async def handler(x):
        return x

    graceful = Echo()
    graceful._chan_init()
    graceful._chan_sock.parent = str(tmp_path)
    await graceful.chan_endpoint()
    assert os.path.isdir(graceful._chan_sock.dir)
    graceful.__ray_shutdown__()
    assert not os.path.exists(graceful._chan_sock.dir)

    live = SocketServer(handler, "live", str(tmp_path))
    await live.start()
    killed = tmp_path / f"{DIR_PREFIX}killed"
    killed.mkdir()
    (killed / "chan.sock").touch()  # a socket file nobody listens on
    young = tmp_path / f"{DIR_PREFIX}young"
    young.mkdir()
    old = time.time() - 3600
    for d in (killed, live.dir):
        os.utime(d, (old, old))
    assert sweep_stale(str(tmp_path)) == 1
    assert not killed.exists() and young.exists() and os.path.isdir(live.dir)
    fresh = SocketServer(handler, "fresh", str(tmp_path))
    await fresh.start()  # starting sweeps too (nothing stale is left now)
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(live.dir), os.path.basename(fresh.dir), young.name])
    live.close()
    fresh.close()
    shutil.rmtree(tmp_path)


async def test_garbage_after_the_token_closes_the_connection_not_the_server():
    server = Echo()
    endpoint = await server.chan_endpoint()
    reader, writer = await asyncio.open_unix_connection(endpoint["path"])
    token = endpoint["token"].encode()
    writer.write(struct.pack("!I", len(token)) + token + struct.pack("!I", 5) + b"junk!")
    await writer.drain()
    hello = await asyncio.wait_for(reader.readexactly(4), 5)
    await reader.readexactly(struct.unpack("!I", hello)[0])  # the instance id
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed
    writer.close()
    client = await SocketClient.connect(endpoint)  # the server still serves others
    assert await client.call(5) == 10
    client.close()
    server._chan_sock.close()


async def test_a_result_whose_caller_went_away_goes_to_the_orphan_hook():
    orphans: list = []

    class Keeper(Echo):
        entered = 0

        async def _chan_handle(self, item):
            Keeper.entered += 1
            return await super()._chan_handle(item)

        def _chan_orphan(self, item, ok, value):
            orphans.append((item, ok, value))

    server = Keeper(delay=0.05)
    client = await SocketClient.connect(await server.chan_endpoint())
    calls = [asyncio.ensure_future(client.call(i)) for i in (1, 2)]
    await async_wait_until(lambda: Keeper.entered == 2, what="both calls inside the callee")
    client.close()  # the caller dies with both calls running
    res = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, SocketBroken) and "connection lost" in str(r) for r in res), res
    await async_wait_until(lambda: len(orphans) == 2, what="both results at the orphan hook")
    assert sorted(orphans) == [(1, True, 2), (2, True, 4)]
    server._chan_sock.close()


async def test_a_call_cancelled_inside_the_callee_is_a_broken_channel_not_a_cancel():
    class Cancels(Echo):
        async def _chan_handle(self, item):
            raise asyncio.CancelledError

    h = Handle(Cancels())
    ch = ChannelClient(h, "echo")
    with pytest.raises(ChannelBroken, match="cancelled in the callee"):
        await ch.call(1)
    ch.close()
    h.server._chan_sock.close()


async def test_an_unreachable_endpoint_is_asked_again_soon(monkeypatch):
    monkeypatch.setattr(channel, "SOCKET_RETRY_SOON_S", 0.05)

    class Restarting(Echo):
        down = True

        async def chan_endpoint(self):
            if self.down:
                raise RuntimeError("actor restarting")
            return await super().chan_endpoint()

    h = Handle(Restarting())
    ch = ChannelClient(h, "echo")
    assert await ch.call(1) == 2 and ch.counts["socket"] == 0  # Ray calls meanwhile
    h.server.down = False
    await asyncio.sleep(0.06)
    assert await ch.call(2) == 4 and ch.counts["socket"] == 1
    ch.close()
    h.server._chan_sock.close()
