"""Same-node fast path for channels: batched, framed pickles over a Unix socket.

A Ray actor call costs far more CPU on each side, and a longer round trip, than a frame on
a Unix socket between two processes of one node (BENCHMARKS.md, "Costs quoted in the
code"). So a callee
actor also listens on a Unix socket, and callers on the same node talk to it there; callers
elsewhere (another node, a `ray://` client on another machine) keep the Ray-call channel.

Safety: the socket lives in a private directory (0700, socket 0600), its path and a random
token are handed out only through a Ray call, and the first frame on a connection must be
that token; nothing is unpickled before it matched.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import pickle
import secrets
import shutil
import socket
import struct
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

HEADER = struct.Struct("!I")
DIR_PREFIX = "llmr-"  # one private directory per listening actor
STALE_AFTER_S = 60.0  # a directory younger than this is never swept
MAX_FRAME = 1 << 30  # a frame claiming more than this is a broken peer, not data


class StreamOpen:
    """A stream connection's call (after the token): run the callee's streamer on `item`;
    its values come back as ("item", v) … ("end", None) or ("error", exc), and closing the
    connection cancels it. Once a stream ended, the connection may open the next one (one
    at a time; actors/rpc/chanstream.py is the caller side)."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item

    def __reduce__(self):
        return (StreamOpen, (self.item,))


class SocketBroken(ConnectionError):
    """The connection dropped with calls in flight; their outcome is unknown."""


class _Framed(asyncio.Protocol, ABC):
    """Length-prefixed frames both ways; outgoing items of one loop tick share a frame."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._out: list[Any] = []
        self._flush_scheduled = False
        self.closed = False
        self.max_frame = MAX_FRAME

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= HEADER.size:
            (n,) = HEADER.unpack_from(buf)
            if n > self.max_frame:
                self._abort(f"frame of {n} bytes")
                return
            if len(buf) < HEADER.size + n:
                break
            frame = bytes(buf[HEADER.size:HEADER.size + n])
            del buf[:HEADER.size + n]
            self.frame_received(frame)
            if self.closed:
                return

    @abstractmethod
    def frame_received(self, frame: bytes) -> None:
        """One whole frame from the peer (the token first, then pickled batches)."""

    def send_frame(self, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines((HEADER.pack(len(payload)), payload))

    def queue(self, item: Any) -> None:
        """Send `item` with everything else queued in this loop tick, as one frame."""
        self._out.append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out:
            payload = self.encode(out)
            if payload is not None:
                self.send_frame(payload)

    @abstractmethod
    def encode(self, batch: list[Any]) -> bytes | None:
        """The frame for a batch (None: nothing left to send), coping with what won't pickle."""

    def decode(self, frame: bytes) -> list[Any] | None:
        """A frame's batch; a frame that does not unpickle closes the connection."""
        try:
            return pickle.loads(frame)
        except Exception as exc:
            self._abort(f"undecodable frame: {type(exc).__name__}")
            return None

    def _abort(self, why: str) -> None:
        log.warning("closing local channel connection: %s", why)
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _picklable(batch: list[Any], on_bad: Callable[[Any, Exception], Any]) -> list[Any]:
    """The entries of `batch` that pickle; `on_bad(entry, exc)` may return a stand-in."""
    out = []
    for entry in batch:
        try:
            _dumps(entry)
            out.append(entry)
        except Exception as exc:
            stand_in = on_bad(entry, exc)
            if stand_in is not None:
                out.append(stand_in)
    return out


# -- callee side --------------------------------------------------------------------------


class _ServerConn(_Framed):
    def __init__(self, server: SocketServer) -> None:
        super().__init__()
        self.server = server
        self.authed = False
        self.max_frame = 256  # until the token matched
        self.stream: asyncio.Task | None = None  # a stream connection's one stream

    def encode(self, batch: list[Any]) -> bytes | None:
        try:
            return _dumps(batch)
        except Exception:  # one unpicklable result must not sink the others
            return _dumps(_picklable(batch, lambda e, exc: (e[0], False, RuntimeError(
                f"result could not be sent back: {type(exc).__name__}: {exc}"))))

    def frame_received(self, frame: bytes) -> None:
        if not self.authed:
            if not hmac.compare_digest(frame, self.server.token):
                self._abort("bad token")
                return
            self.authed = True
            self.max_frame = MAX_FRAME
            self.send_frame(self.server.instance.encode())
            return
        batch = self.decode(frame)
        if batch is None:
            return
        loop = asyncio.get_running_loop()
        if isinstance(batch, StreamOpen):
            if self.stream is not None and not self.stream.done():
                self._abort("a stream opened while another runs on the connection")
                return
            self.stream = loop.create_task(self._stream(batch.item))
            self.server.tasks.add(self.stream)
            self.stream.add_done_callback(self.server.tasks.discard)
            return
        for fid, item in batch:
            task = loop.create_task(self._run(fid, item))
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)

    async def _stream(self, item: Any) -> None:
        if self.server.streamer is None:
            self.queue(("error", RuntimeError("this callee does not stream")))
            return
        try:
            async for value in self.server.streamer(item):
                self.queue(("item", value))
            self.queue(("end", None))
        except asyncio.CancelledError:  # the caller closed the connection: it went away
            raise
        except BaseException as exc:  # returned to the caller, never lost
            self.queue(("error", exc))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.stream is not None:
            self.stream.cancel()

    async def _run(self, fid: int, item: Any) -> None:
        try:
            entry = (fid, True, await self.server.handler(item))
        except asyncio.CancelledError:  # the callee is shutting down; not the caller's cancel
            entry = (fid, False, SocketBroken("call cancelled in the callee"))
        except BaseException as exc:  # returned to the caller, never lost
            entry = (fid, False, exc)
        if not self.closed:
            self.queue(entry)
        elif self.server.on_orphan is not None:  # the caller went away (e.g. it died)
            try:
                self.server.on_orphan(item, entry[1], entry[2])
            except Exception as exc:
                log.warning("orphaned result handler failed: %s", exc)


class SocketServer:
    """Listens on a private Unix socket and runs `handler(item)` for each call."""

    def __init__(self, handler: Callable[[Any], Awaitable[Any]], instance: str,
                 parent: str | None = None,
                 on_orphan: Callable[[Any, bool, Any], None] | None = None,
                 streamer: Callable[[Any], AsyncIterator[Any]] | None = None) -> None:
        self.handler = handler
        self.streamer = streamer  # runs a StreamOpen's item
        self.instance = instance
        self.parent = parent
        self.on_orphan = on_orphan  # (item, ok, value) for results nobody can receive
        self.token = secrets.token_hex(32).encode()
        self.tasks: set[asyncio.Task] = set()
        self.dir = ""
        self.path = ""
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> dict[str, str]:
        if self._server is None:
            parent = self.parent
            if parent is None or len(parent) > 60:  # a socket path must stay under 108 bytes
                parent = None
            sweep_stale(parent or tempfile.gettempdir())
            self.dir = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent)  # 0700: this user only
            self.path = os.path.join(self.dir, "chan.sock")
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(lambda: _ServerConn(self), self.path)
            os.chmod(self.path, 0o600)
        return self.endpoint()

    def endpoint(self) -> dict[str, str]:
        return {"host": socket.gethostname(), "path": self.path,
                "token": self.token.decode(), "instance": self.instance}

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def sweep_stale(parent: str, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove socket directories nobody listens on any more (their actor was killed, so it
    never closed them); returns how many. Young ones are left alone: their actor may be
    between creating the directory and listening."""
    removed = 0
    try:
        names = [n for n in os.listdir(parent) if n.startswith(DIR_PREFIX)]
    except OSError:
        return 0
    now = time.time()
    uid = os.getuid()
    for name in names:
        d = os.path.join(parent, name)
        try:
            st = os.stat(d)
            if st.st_uid != uid or now - st.st_mtime < older_than_s:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.2)
                probe.connect(os.path.join(d, "chan.sock"))
            continue  # someone listens: a live actor's
        except (FileNotFoundError, ConnectionRefusedError):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
        except OSError:
            continue
    return removed


# -- caller side --------------------------------------------------------------------------


class _ClientConn(_Framed):
    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, asyncio.Future] = {}
        self.instance: asyncio.Future = asyncio.get_running_loop().create_future()

    def encode(self, batch: list[Any]) -> bytes | None:
        try:
            return _dumps(batch)
        except Exception:  # fail the calls that can't be sent, send the others
            def fail(entry: Any, exc: Exception) -> None:
                fut = self.pending.pop(entry[0], None)
                if fut is not None and not fut.done():
                    fut.set_exception(TypeError(f"call could not be sent: {exc}"))
            good = _picklable(batch, fail)
            return _dumps(good) if good else None

    def frame_received(self, frame: bytes) -> None:
        if not self.instance.done():
            self.instance.set_result(frame.decode())
            return
        batch = self.decode(frame)
        if batch is None:
            return
        for fid, ok, value in batch:
            fut = self.pending.pop(fid, None)
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        err = SocketBroken(f"connection lost{f': {exc}' if exc else ''}")
        if not self.instance.done():
            self.instance.set_exception(err)
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)


class SocketClient:
    """One connection to a callee's socket; calls from one event loop."""

    def __init__(self, conn: _ClientConn, instance: str) -> None:
        self._conn = conn
        self.instance = instance
        self._next = 0

    @classmethod
    async def connect(cls, endpoint: dict[str, str], timeout_s: float = 2.0) -> SocketClient:
        """Raises OSError when the socket is not reachable from here (another machine)."""
        if endpoint.get("host") != socket.gethostname() or not endpoint.get("path"):
            raise OSError("callee is on another host")
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_unix_connection(_ClientConn, endpoint["path"]), timeout_s)
        conn.send_frame(endpoint["token"].encode())
        try:
            instance = await asyncio.wait_for(asyncio.shield(conn.instance), timeout_s)
        except (SocketBroken, TimeoutError) as exc:
            if conn.transport is not None:
                conn.transport.abort()
            raise OSError(f"handshake failed: {exc}") from None
        return cls(conn, instance)

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @property
    def inflight(self) -> int:
        return len(self._conn.pending)

    async def call(self, item: Any) -> Any:
        if self._conn.closed:
            raise SocketBroken("connection closed")
        fid = self._next
        self._next += 1
        fut = asyncio.get_running_loop().create_future()
        self._conn.pending[fid] = fut
        self._conn.queue((fid, item))
        return await fut

    def close(self) -> None:
        if self._conn.transport is not None:
            self._conn.transport.close()
