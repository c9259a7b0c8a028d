"""Batched calls between actors: many logical calls ride on few Ray calls.

One Ray actor call costs a share of a millisecond of CPU on each side (BENCHMARKS.md,
"Costs quoted in the code"), so a request that crossed two actors one call at a time
capped the whole system at a few hundred requests a second. A
channel coalesces every call made in one event-loop tick into one `chan_submit`, and the
callee hands finished results back in batches through a parked long-poll `chan_collect`.
With nothing else in flight a call goes as one plain Ray call (the shortest round trip);
under load both directions are amortized.

Callers on the callee's node skip Ray calls altogether: they fetch the callee's Unix socket
endpoint once (`chan_endpoint`) and send batched frames there (actors/rpc/localsock.py), which
cuts a hop's round trip by an order of magnitude. Anything that can't connect keeps the Ray path;
`LLM_ROUTER_LOCAL_SOCKETS=0` in the cluster's environment keeps it everywhere.

If the callee dies or restarts, every call it had accepted fails with `ChannelBroken`
(the collect fails, or a new instance id shows up), so callers can fall back or retry;
nothing waits forever.

This module is the caller's side; the callee's (the `ChannelServer` mixin an actor
inherits) is actors/rpc/channel_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from actors.core.errors import task_cause
from actors.rpc.chanstream import StreamConns
from actors.rpc.localsock import SocketBroken, SocketClient

log = logging.getLogger(__name__)

POLL_S = 2.0  # a parked collect returns empty after this long (keeps calls short-lived)
IDLE_PARK_S = 10.0  # keep a collect parked this long after the last call
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
        """A streaming call: the callee's values as they come (actors/rpc/chanstream.py);
        closing the iterator cancels it in the callee."""
        from actors.rpc.chanstream import open_stream

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
