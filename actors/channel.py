"""Batched calls between actors: many logical calls ride on few Ray calls.

One Ray actor call costs a share of a millisecond of CPU on each side (BENCHMARKS.md,
"Costs quoted in the code"), so a request that crossed two actors one call at a time
capped the whole system at a few hundred requests a second. A
channel coalesces every call made in one event-loop tick into one `chan_submit`, and the
callee hands finished results back in batches through a parked long-poll `chan_collect`.
With nothing else in flight a call goes as one plain Ray call (the shortest round trip);
under load both directions are amortized.

Callers on the callee's node skip Ray calls altogether: they fetch the callee's Unix socket
endpoint once (`chan_endpoint`) and send batched frames there (actors/localsock.py), which
cuts a hop's round trip by an order of magnitude. Anything that can't connect keeps the Ray path;
`LLM_ROUTER_LOCAL_SOCKETS=0` in the cluster's environment keeps it everywhere.

If the callee dies or restarts, every call it had accepted fails with `ChannelBroken`
(the collect fails, or a new instance id shows up), so callers can fall back or retry;
nothing waits forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from actors.chanstream import StreamConns
from actors.errors import task_cause
from actors.localsock import SocketBroken, SocketClient, SocketServer

log = logging.getLogger(__name__)

POLL_S = 2.0  # a parked collect returns empty after this long (keeps calls short-lived)
IDLE_PARK_S = 10.0  # keep a collect parked this long after the last call
IDLE_CHANNEL_S = 300.0  # callee forgets channels nobody collected from for this long
SOCKET_RETRY_S = 30.0  # callee on another host: use Ray calls this long before asking again
SOCKET_RETRY_SOON_S = 2.0  # callee restarting or unreachable for now: ask again soon


def sockets_enabled() -> bool:
    """Same-node sockets unless LLM_ROUTER_LOCAL_SOCKETS is 0/false/no/off."""
    flag = os.environ.get("LLM_ROUTER_LOCAL_SOCKETS", "1").strip().lower()
    return flag not in ("0", "false", "no", "off")


class ChannelBroken(RuntimeError):
    """The callee died or restarted with calls in flight; their outcome is unknown."""


class _Pending:
    __slots__ = ("future", "instance")

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future
        self.instance: str | None = None  # callee instance that accepted it


class ChannelClient:
    """Caller side for one callee actor, bound to one event loop."""

    def __init__(self, handle: Any, name: str, *, sockets: bool | None = None) -> None:
        self.handle = handle
        self.name = name
        self.id = uuid.uuid4().hex
        self._sockets = sockets_enabled() if sockets is None else sockets
        self._sock: SocketClient | None = None
        self._sock_connecting: asyncio.Future | None = None
        self._sock_retry_at = 0.0
        self._endpoint: dict[str, str] | None = None
        self.stream_conns = StreamConns()  # stream connections between streams
        self._retired = False
        self._outbox: list[tuple[int, Any]] = []
        self._pending: dict[int, _Pending] = {}
        self._next = 0
        self._plain = 0
        self.counts = {"calls": 0, "socket": 0, "plain": 0, "submits": 0, "collects": 0}
        self._flush_scheduled = False
        self._collector: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def inflight(self) -> int:
        return len(self._pending) + (self._sock.inflight if self._sock is not None else 0)

    async def call(self, item: Any) -> Any:
        self.counts["calls"] += 1
        if self._sockets:
            sock = self._sock
            if sock is None or sock.closed:
                sock = await self._socket()
            if sock is not None:
                self.counts["socket"] += 1
                try:
                    return await sock.call(item)
                except SocketBroken as exc:
                    raise ChannelBroken(f"{self.name} unavailable: {exc}") from None
                finally:
                    if self._retired and not sock.inflight:
                        sock.close()
        if not self._pending and not self._plain:
            self.counts["plain"] += 1
            return await self._call_plain(item)
        loop = asyncio.get_running_loop()
        self._loop = loop
        fid = self._next
        self._next += 1
        p = _Pending(loop.create_future())
        self._pending[fid] = p
        self._outbox.append((fid, item))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._collector is None or self._collector.done():
            self._collector = loop.create_task(self._collect_loop())
        return await p.future

    def stream(self, item: Any) -> AsyncIterator[Any]:
        """A streaming call: the callee's values as they come (actors/chanstream.py);
        closing the iterator cancels it in the callee."""
        from actors.chanstream import open_stream

        return open_stream(self, item)

    async def stream_endpoint(self) -> dict[str, str] | None:
        """The callee's socket endpoint when it is reachable from here, else None."""
        if not self._sockets:
            return None
        sock = self._sock
        if sock is None or sock.closed:
            sock = await self._socket()
        return self._endpoint if sock is not None else None

    async def _socket(self) -> SocketClient | None:
        """The same-node socket to the callee, connecting once; None means use Ray calls."""
        self._sock = None
        if time.monotonic() < self._sock_retry_at:
            return None
        if self._sock_connecting is None:
            self._sock_connecting = asyncio.ensure_future(self._connect())
        fut = self._sock_connecting
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done() and self._sock_connecting is fut:
                self._sock_connecting = None

    async def _connect(self) -> SocketClient | None:
        try:
            endpoint = await self.handle.chan_endpoint.remote()
        except Exception as exc:  # restarting, dead or old: Ray calls decide, ask again soon
            log.debug("%s: no socket endpoint (%s); using Ray calls", self.name, exc)
            self._sock_retry_at = time.monotonic() + SOCKET_RETRY_SOON_S
            return None
        try:
            self._sock = await SocketClient.connect(endpoint)
            self._endpoint = endpoint
        except Exception as exc:  # another host (or its socket is not reachable from here)
            log.debug("%s: no local socket (%s); using Ray calls", self.name, exc)
            self._sock_retry_at = time.monotonic() + SOCKET_RETRY_S
            return None
        return self._sock

    async def _call_plain(self, item: Any) -> Any:
        """Nothing else in flight: one ordinary call is the shortest round trip."""
        self._plain += 1
        try:
            return await self.handle.chan_one.remote(item)
        except RayTaskError as exc:
            cause = task_cause(exc)
            if isinstance(cause, asyncio.CancelledError):
                raise ChannelBroken("call cancelled in the callee") from None
            raise cause from None
        except RayActorError as exc:
            raise ChannelBroken(f"{self.name} unavailable: {type(exc).__name__}") from None
        finally:
            self._plain -= 1

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._outbox = self._outbox, []
        if batch:
            self.counts["submits"] += 1
            ref = self.handle.chan_submit.remote(self.id, batch)
            asyncio.ensure_future(self._accepted(ref, [fid for fid, _ in batch]))

    async def _accepted(self, ref: Any, fids: list[int]) -> None:
        try:
            instance = await ref
        except Exception as exc:
            self._fail(fids, exc)
            return
        for fid in fids:
            p = self._pending.get(fid)
            if p is not None and p.instance is None:
                p.instance = instance

    async def _collect_loop(self) -> None:
        """Keep one collect parked at the callee while calls are pending, and for a while
        after (IDLE_PARK_S), so a steady trickle of calls costs one Ray call each."""
        idle_since = None
        while True:
            if self._pending:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_PARK_S:
                return
            self.counts["collects"] += 1
            try:
                instance, done = await self.handle.chan_collect.remote(self.id, POLL_S)
            except Exception as exc:
                self._fail(list(self._pending), exc)
                if not self._pending:
                    return
                continue
            for fid, ok, value in done:
                p = self._pending.pop(fid, None)
                if p is None or p.future.done():
                    continue
                if ok:
                    p.future.set_result(value)
                else:
                    p.future.set_exception(value)
            lost = [fid for fid, p in self._pending.items()
                    if p.instance is not None and p.instance != instance]
            if lost:
                self._fail(lost, ChannelBroken(f"{self.name} restarted"))

    def retire(self) -> None:
        """Replaced by a new client: close the socket once calls in flight finished."""
        self._retired = True
        self.stream_conns.close()
        if self._sock is not None and not self._sock.inflight:
            self._sock.close()

    def close(self) -> None:
        """Stop the parked collect and the socket (calls still in flight fail)."""
        if self._collector is not None:
            self._collector.cancel()
        self.stream_conns.close()
        if self._sock is not None:
            self._sock.close()
        self._fail(list(self._pending), ChannelBroken(f"{self.name} channel closed"))

    def _fail(self, fids: list[int], exc: BaseException) -> None:
        if not isinstance(exc, ChannelBroken):
            exc = ChannelBroken(f"{self.name} unavailable: {type(exc).__name__}: {exc}")
        for fid in fids:
            p = self._pending.pop(fid, None)
            if p is not None and not p.future.done():
                p.future.set_exception(exc)


class ChannelPool:
    """One ChannelClient per event loop (Ray actors, notebooks and tests use several)."""

    def __init__(self, handle_fn: Callable[[], Any], name: str) -> None:
        self._handle_fn = handle_fn
        self.name = name
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ChannelClient] = (
            weakref.WeakKeyDictionary())

    def client(self) -> ChannelClient:
        loop = asyncio.get_running_loop()
        c = self._by_loop.get(loop)
        if c is None:
            c = ChannelClient(self._handle_fn(), self.name)
            self._by_loop[loop] = c
        return c

    async def call(self, item: Any) -> Any:
        return await self.client().call(item)

    def stream(self, item: Any) -> AsyncIterator[Any]:
        return self.client().stream(item)

    def reset(self) -> None:
        """Drop clients (e.g. after the callee was re-resolved); in-flight calls still finish."""
        for c in list(self._by_loop.values()):
            c.retire()
        self._by_loop = weakref.WeakKeyDictionary()


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
