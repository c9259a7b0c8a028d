"""The caller side of a streaming channel call (actors/rpc/channel.py, `ChannelClient.stream`).

Same node: a connection of its own to the callee's Unix socket (actors/rpc/localsock.py
`StreamOpen`), values framed as they come; closing it cancels the stream in the callee. A
connection whose stream ended is kept for the caller's next stream to that socket
(`StreamConns`): opening one costs an accept, a task and a token handshake on each side,
about a loop turn per side per hop before the callee even sees the call — time that every
streamed request's first token waited on, twice (caller → router → provider).
Elsewhere (another node, `LLM_ROUTER_LOCAL_SOCKETS=0`): the callee's `chan_stream`, a Ray
streaming-generator method; closing cancels that task with `ray.cancel`. Either way a
callee that dies mid-stream is a ChannelBroken, and the caller stopping early (or being
cancelled) reaches the callee's generator as a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from actors.core.errors import task_cause
from actors.rpc.localsock import SocketBroken, StreamOpen, _dumps, _Framed

if TYPE_CHECKING:
    from actors.rpc.channel import ChannelClient

CONNECT_S = 2.0
#: Stream connections kept open between streams, per caller loop and callee.
IDLE_STREAM_CONNS = 8
_LOST = "lost"


async def open_stream(client: ChannelClient, item: Any) -> AsyncIterator[Any]:
    from actors.rpc.channel import ChannelBroken

    endpoint = await client.stream_endpoint()
    source = _via_socket(endpoint, item, client.stream_conns) if endpoint \
        else _via_ray(client.handle, item)
    try:
        async for value in source:
            yield value
    except (SocketBroken, RayActorError) as exc:
        raise ChannelBroken(f"{client.name} unavailable mid-stream: {exc}") from None
    finally:
        await source.aclose()


class _StreamConn(_Framed):
    """One stream's connection: the callee's instance id first, then batches of values."""

    def __init__(self) -> None:
        super().__init__()
        self.values: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.instance: asyncio.Future = asyncio.get_running_loop().create_future()

    def encode(self, batch: list[Any]) -> bytes | None:  # this side sends frames directly
        return _dumps(batch)

    def frame_received(self, frame: bytes) -> None:
        if not self.instance.done():
            self.instance.set_result(frame.decode())
            return
        batch = self.decode(frame)
        for entry in batch or ():
            self.values.put_nowait(entry)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.instance.done():
            self.instance.set_exception(SocketBroken("connection lost"))
        self.values.put_nowait((_LOST, exc))


class StreamConns:
    """One caller's idle stream connections (bound to its event loop), each kept with the
    socket path it goes to: a stream that ended cleanly hands its connection back, the
    next stream to that socket takes it instead of connecting."""

    def __init__(self, keep: int = IDLE_STREAM_CONNS) -> None:
        self._keep = keep
        self._idle: list[tuple[str, _StreamConn]] = []

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, path: str) -> _StreamConn | None:
        """An open connection to `path` (None: connect a new one); others are closed."""
        while self._idle:
            where, conn = self._idle.pop()
            if where == path and _usable(conn):
                return conn
            _close(conn)
        return None

    def give(self, path: str, conn: _StreamConn) -> None:
        if _usable(conn) and conn.values.empty() and len(self._idle) < self._keep:
            self._idle.append((path, conn))
        else:
            _close(conn)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, conn in idle:
            _close(conn)


def _usable(conn: _StreamConn) -> bool:
    return not conn.closed and conn.transport is not None and not conn.transport.is_closing()


def _close(conn: _StreamConn) -> None:
    if conn.transport is not None:
        conn.transport.close()  # before a stream's end: the callee cancels the stream


async def _via_socket(endpoint: dict[str, str], item: Any,
                      conns: StreamConns) -> AsyncIterator[Any]:
    path = endpoint["path"]
    conn = conns.take(path)
    if conn is None:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_unix_connection(_StreamConn, path), CONNECT_S)
    ended = False
    try:
        if conn.instance.done():  # kept from an earlier stream: authenticated already
            conn.send_frame(_dumps(StreamOpen(item)))
        else:
            # Token and call back to back: the callee unpickles nothing before the token
            # matched, and one round trip less is ~a loop turn on each side per hop.
            conn.send_frame(endpoint["token"].encode())
            conn.send_frame(_dumps(StreamOpen(item)))
            await asyncio.wait_for(asyncio.shield(conn.instance), CONNECT_S)
        while True:
            kind, value = await conn.values.get()
            if kind == "item":
                yield value
            elif kind == "end":
                ended = True
                return
            elif kind == "error":
                ended = True
                raise value
            else:
                raise SocketBroken(f"stream connection lost{f': {value}' if value else ''}")
    finally:
        if not ended and conn.values.qsize() == 1:  # left after the last value (a reply
            ended = conn.values.get_nowait()[0] == "end"  # ends it), its end already here
        if ended:  # the callee's stream is over: the connection can carry the next one
            conns.give(path, conn)
        else:
            _close(conn)


async def _via_ray(handle: Any, item: Any) -> AsyncIterator[Any]:
    gen = handle.chan_stream.options(num_returns="streaming").remote(item)
    finished = False
    try:
        async for ref in gen:
            try:
                value = await ref
            except RayTaskError as exc:
                raise task_cause(exc) from None
            yield value
        finished = True
    except TaskCancelledError:
        raise SocketBroken("stream cancelled in the callee") from None
    finally:
        if not finished:
            ray.cancel(gen)
