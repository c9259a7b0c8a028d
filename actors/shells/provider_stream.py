"""A streamed attempt through one provider's resilience stack.

The same rules as `Provider.complete`, for an answer relayed as it arrives: breaker, then
limiter (the lease is held until the stream ends, `lease.sent` marks the send), then the
wire stream. Until the first content event an attempt is like any other — a failure is
recorded and retried (or left to the router to fall back). After it, events go out as they
come and nothing is retried: an error mid-stream ends the stream with the partial answer
billed (usage estimated and marked where the provider never reported it), and so does a
caller that goes away (the wire stream is closed, which stops the provider generating).

`stream_attempts(provider, call)` yields the events (TextDelta, ToolCallDelta, Finish) and
last a ProviderReply carrying the attempts, the result and the validated output — the
reply `complete` would have returned. When the caller stops early, the billed attempt is
handed to `on_abandoned(reply)` (the actor sends it to the tracker: nobody else can).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from actors.clients.base import Result
from actors.clients.stream import Done, StreamError
from actors.core.errors import ErrorClass, ProviderError
from actors.core.retry import call_with_retry
from actors.rpc.messages import ProviderCall, ProviderReply

if TYPE_CHECKING:
    from actors.shells.provider import Provider

#: An attempt the caller abandoned mid-stream: billed, not the provider's fault.
CANCELLED = "client went away mid-stream"


class _Open:
    """A stream that has delivered its first content (or finished): what to relay next."""

    __slots__ = ("stream", "lease", "buffered", "n", "started")

    def __init__(self, stream: Any, lease: Any, buffered: list[Any], n: int,
                 started: float) -> None:
        self.stream, self.lease, self.buffered = stream, lease, buffered
        self.n, self.started = n, started


async def _next(stream: Any, deadline_mono: float | None) -> Any:
    remaining = None if deadline_mono is None else deadline_mono - time.monotonic()
    try:
        async with asyncio.timeout(remaining):
            return await anext(stream)
    except TimeoutError:
        raise ProviderError(ErrorClass.DEADLINE, "no answer within the request deadline") from None


async def stream_attempts(p: Provider, call: ProviderCall,
                          on_abandoned: Callable[[ProviderReply], None] | None = None,
                          ) -> AsyncIterator[Any]:
    from actors.shells.provider import check_result, reserve_tokens

    spec = p.spec
    completion = call.completion
    if completion.max_tokens is None:
        completion = completion.model_copy(update={"max_tokens": spec.max_output_tokens})
    attempts: list[Any] = []
    reserve = reserve_tokens(completion)
    deadline_mono = None
    if call.deadline is not None:
        deadline_mono = time.monotonic() + (call.deadline - time.time())

    async def open_one() -> _Open:
        """One attempt up to its first content event (the part that may be retried)."""
        n = call.attempt_offset + len(attempts) + 1
        now = time.time()
        if not p.breaker.allow(now):
            raise ProviderError(ErrorClass.BREAKER_OPEN, p._open_message(now), provider=spec.name)
        started = time.monotonic()
        lease = None
        stream = None
        try:
            lease = await p.limiter.acquire(reserve, deadline_mono, call.priority)
            stream = p.client.send_stream(completion, on_sent=lease.sent)
            buffered: list[Any] = []
            while not stream.started:
                ev = await _next(stream, deadline_mono)
                buffered.append(ev)
                if isinstance(ev, Done):
                    break
            return _Open(stream, lease, buffered, n, started)
        except ProviderError as exc:
            partial = exc.partial if isinstance(exc, StreamError) else None
            await _close(stream, lease, partial)
            if exc.provider is None:
                exc.provider = spec.name
            p._record_failure(n, exc, time.monotonic() - started, attempts, partial)
            raise
        except asyncio.CancelledError:
            p.breaker.release_probe()
            await _close(stream, lease, None)
            raise
        except Exception as exc:  # a bug or an unexpected library error: classify
            await _close(stream, lease, None)
            err = ProviderError(ErrorClass.INTERNAL, f"{type(exc).__name__}: {exc}",
                                provider=spec.name)
            p._record_failure(n, err, time.monotonic() - started, attempts)
            raise err from None

    try:
        opened = await call_with_retry(open_one, spec.retry, deadline=deadline_mono)
    except ProviderError as exc:
        yield p._reply(attempts, error=exc)
        return
    stream, lease, n = opened.stream, opened.lease, opened.n
    done: Result | None = None
    finished = False
    try:
        pending = opened.buffered
        while True:
            for ev in pending:
                if isinstance(ev, Done):
                    done = ev.result
                else:
                    yield ev
            if done is not None:
                break
            pending = [await _next(stream, deadline_mono)]
        finished = True
    except ProviderError as exc:  # mid-stream: relayed, not retried; what was sent is billed
        finished = True
        partial = exc.partial if isinstance(exc, StreamError) else stream.partial()
        await _close(stream, lease, partial)
        if exc.provider is None:
            exc.provider = spec.name
        p._record_failure(n, exc, time.monotonic() - opened.started, attempts, partial)
        reply = p._reply(attempts, error=exc)
    else:
        lease.release(done.input_tokens + done.output_tokens)
        try:
            parsed, confidence = check_result(call, completion, done)
        except ProviderError as exc:  # e.g. JSON not matching the schema: billed, failed
            p._record_failure(n, exc, time.monotonic() - opened.started, attempts, done)
            reply = p._reply(attempts, error=exc)
        else:
            p._record_success(n, done, confidence, attempts)
            reply = p._reply(attempts, result=done, parsed=parsed)
    finally:
        if not finished:  # the caller went away (cancelled, or closed the generator)
            partial = stream.partial()
            await _close(stream, lease, partial)
            exc = ProviderError(ErrorClass.CANCELLED, CANCELLED, provider=spec.name)
            p._record_failure(n, exc, time.monotonic() - opened.started, attempts, partial)
            if on_abandoned is not None:
                on_abandoned(p._reply(attempts, error=exc))
    try:
        yield reply
    except (GeneratorExit, asyncio.CancelledError):  # gone just before the reply: keep the bill
        if on_abandoned is not None:
            on_abandoned(reply)
        raise


async def _close(stream: Any, lease: Any, partial: Result | None) -> None:
    """Drop the connection (the provider stops generating) and give the capacity back,
    correcting the token ledger with what was used."""
    if stream is not None:
        try:
            await stream.aclose()
        except Exception:  # closing a broken stream: nothing more to learn
            pass
    if lease is not None:
        lease.release(partial.input_tokens + partial.output_tokens if partial else None)
