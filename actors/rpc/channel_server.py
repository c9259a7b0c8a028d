"""The callee's side of a channel (actors/rpc/channel.py): the mixin an actor inherits so its
`_chan_handle` is reachable by batched Ray calls (`chan_submit` + a parked `chan_collect`),
one plain call (`chan_one`), a streaming call (`chan_stream`), and its Unix socket on this
node (`chan_endpoint`, actors/rpc/localsock.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from actors.rpc.channel import ChannelBroken
from actors.rpc.localsock import SocketServer

IDLE_CHANNEL_S = 300.0  # callee forgets channels nobody collected from for this long


class _Chan:
    __slots__ = ("done", "event", "seen", "running")

    def __init__(self) -> None:
        self.done: list[tuple[int, bool, Any]] = []
        self.event = asyncio.Event()
        self.seen = time.monotonic()
        self.running = 0


class ChannelServer(ABC):
    """Mixin for the callee actor: `_chan_handle(item)` does the work of one call."""

    _chan_instance: str
    _chans: dict[str, _Chan]
    _chan_sock: SocketServer

    @abstractmethod
    async def _chan_handle(self, item: Any) -> Any:
        """The work of one call."""

    def _chan_init(self) -> None:
        if not hasattr(self, "_chans"):
            self._chans = {}
            self._chan_instance = uuid.uuid4().hex
            self._chan_sock = SocketServer(self._chan_handle, self._chan_instance,
                                           _session_dir(), self._chan_orphan,
                                           self._chan_stream)

    def _chan_stream(self, item: Any) -> AsyncIterator[Any]:
        """The values of one streaming call, as they come (override to stream)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    async def chan_stream(self, item: Any) -> AsyncIterator[Any]:
        """A streaming call over Ray (a streaming generator method): callers on another
        node, or with local sockets off. Cancelling it (ray.cancel) closes the stream."""
        async for value in self._chan_stream(item):
            yield value

    def _chan_orphan(self, item: Any, ok: bool, value: Any) -> None:
        """A call finished after its caller's connection dropped (the caller died): the
        result can't be delivered. Override to keep what matters (e.g. billed attempts)."""
        return None  # by default it is dropped

    def __ray_shutdown__(self) -> None:
        """Ray calls this when the actor exits gracefully: remove the socket directory (a
        killed actor's is swept by the next one to listen on this node)."""
        sock = getattr(self, "_chan_sock", None)
        if sock is not None:
            sock.close()

    async def chan_endpoint(self) -> dict[str, str]:
        """Where callers on this node reach `_chan_handle` without Ray calls."""
        self._chan_init()
        return await self._chan_sock.start()

    def _chan(self, cid: str) -> _Chan:
        self._chan_init()
        ch = self._chans.get(cid)
        if ch is None:
            ch = self._chans[cid] = _Chan()
            self._chan_gc()
        return ch

    def _chan_gc(self) -> None:
        now = time.monotonic()
        for cid, ch in list(self._chans.items()):
            if not ch.running and now - ch.seen > IDLE_CHANNEL_S:
                del self._chans[cid]

    async def chan_one(self, item: Any) -> Any:
        return await self._chan_handle(item)

    async def chan_submit(self, cid: str, batch: list[tuple[int, Any]]) -> str:
        ch = self._chan(cid)
        for fid, item in batch:
            ch.running += 1
            asyncio.ensure_future(self._chan_run(ch, fid, item))
        return self._chan_instance

    async def _chan_run(self, ch: _Chan, fid: int, item: Any) -> None:
        try:
            value = await self._chan_handle(item)
            ch.done.append((fid, True, value))
        except asyncio.CancelledError:  # the callee is shutting down; not the caller's cancel
            ch.done.append((fid, False, ChannelBroken("call cancelled in the callee")))
        except BaseException as exc:  # returned to the caller, never lost
            ch.done.append((fid, False, exc))
        finally:
            ch.running -= 1
            ch.event.set()

    async def chan_collect(self, cid: str, wait_s: float) -> tuple[str, list[tuple[int, bool, Any]]]:
        ch = self._chan(cid)
        ch.seen = time.monotonic()
        if not ch.done:
            ch.event.clear()
            try:
                await asyncio.wait_for(ch.event.wait(), wait_s)
            except TimeoutError:
                pass
            await asyncio.sleep(0)  # gather completions finishing in the same loop turn
        out, ch.done = ch.done, []
        ch.seen = time.monotonic()
        return self._chan_instance, out


def _session_dir() -> str | None:
    """Ray's session directory, so socket files live (and go) with the session's others."""
    try:
        import ray._private.worker as worker

        return worker.global_worker.node.get_session_dir_path()
    except Exception:
        return None
