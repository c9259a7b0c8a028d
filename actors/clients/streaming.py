"""One streamed attempt: the HTTP exchange, its server-sent events through the format's
parser, and the failure rules (see `WireClient.send_stream`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

from actors.clients.base import Completion, Result
from actors.clients.faults import TRANSPORT_ERRORS, BadBody, ErrorEvent, event_error
from actors.clients.http import ON_SENT
from actors.clients.sse import SSEDecoder
from actors.clients.stream import (
    Done,
    Finish,
    StreamError,
    StreamParser,
    TextDelta,
    ToolCallDelta,
    events_of,
)
from actors.core.errors import ErrorClass, ProviderError

if TYPE_CHECKING:
    from actors.clients.wire import WireClient

Event = TextDelta | ToolCallDelta | Finish | Done


def _whole(data: str) -> bool:
    """Whether an event left at the end of the body is complete JSON (or [DONE])."""
    try:
        json.loads(data)
    except ValueError:
        return data.strip() == "[DONE]"
    return True


class WireStream:
    """Async iterator of one streamed answer's events; `async with` or `aclose()` to stop.

    `first_byte_s` / `first_token_s`: seconds from the send to the first body byte and the
    first content event. `partial()` is what has been received so far, usage estimated
    where the provider has not reported it yet: what to bill when the caller cancels.
    """

    def __init__(self, client: WireClient, completion: Completion,
                 on_sent: Callable[[], None] | None) -> None:
        self._client = client
        self._completion = completion
        self._on_sent = on_sent
        self._parser: StreamParser | None = None
        self._start: float | None = None
        self.first_byte_s: float | None = None
        self.first_token_s: float | None = None
        self.result: Result | None = None
        self._delivered = False
        self._gen = self._run()

    def __aiter__(self) -> WireStream:
        return self

    async def __anext__(self) -> Event:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> WireStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    @property
    def started(self) -> bool:
        """Whether any content (text or a tool call) has been delivered."""
        return self._delivered

    def partial(self) -> Result | None:
        """The answer so far (None before the request went out)."""
        if self._parser is None or self._start is None:
            return None
        return self._parser.state.result(time.perf_counter() - self._start, self.first_token_s)

    def _fail(self, exc: ProviderError) -> StreamError:
        exc = self._client.scrubbed(exc)
        return StreamError(exc.error_class, exc.message, provider=self._client.spec.name,
                           started=self.started, partial=self.partial(), status=exc.status,
                           retry_after=exc.retry_after)

    async def _run(self) -> AsyncIterator[Event]:
        client, spec = self._client, self._client.spec
        request = client.request(self._completion, stream=True)
        parser = client.stream_parser(spec, self._completion)
        self._start = start = time.perf_counter()
        token = ON_SENT.set(self._on_sent)
        try:
            async with asyncio.timeout(spec.timeout_s):
                response = await client.transport.handle_async_request(request)
        except TRANSPORT_ERRORS as exc:
            raise client.transport_failure(exc) from None
        finally:
            ON_SENT.reset(token)
        try:
            status = response.status_code
            if not 200 <= status < 300 or "event-stream" not in response.headers.get(
                    "content-type", ""):
                for event in self._whole(response, await self._read(response)):
                    yield event
                return
            self._parser = parser
            async for event in self._events(response, parser, start):
                yield event
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response) -> bytes:
        try:
            async with asyncio.timeout(self._client.spec.timeout_s):
                return await response.aread()
        except TRANSPORT_ERRORS as exc:
            raise self._client.transport_failure(exc) from None

    def _whole(self, response: httpx.Response, data: bytes) -> list[Event]:
        """An error status, or a server that answered the stream request in one piece."""
        assert self._start is not None
        client = self._client
        try:
            result = client.parse(client.spec, response.status_code, response.headers, data,
                                  time.perf_counter() - self._start)
        except ProviderError as exc:
            raise client.scrubbed(exc) from None
        self.first_token_s = result.latency_s
        self._delivered = True
        self.result = result.model_copy(update={"first_token_s": result.latency_s})
        return events_of(self.result)

    async def _events(self, response: httpx.Response, parser: StreamParser,
                      start: float) -> AsyncIterator[Event]:
        client, state = self._client, parser.state
        decoder = SSEDecoder()
        chunks = response.aiter_bytes()
        while not state.complete:
            try:
                async with asyncio.timeout(client.spec.timeout_s):  # between two chunks
                    chunk = await anext(chunks, None)
            except TRANSPORT_ERRORS as exc:
                raise self._fail(client.transport_failure(exc)) from None
            if self.first_byte_s is None:
                self.first_byte_s = time.perf_counter() - start
            raw = decoder.flush() if chunk is None else decoder.feed(chunk)
            for name, data in raw:
                if state.complete:
                    break
                if chunk is None and not _whole(data):
                    break  # the body ended inside an event: a cut, not a malformed event
                for event in self._parse(parser, name, data):
                    if self.first_token_s is None and not isinstance(event, Finish):
                        self.first_token_s = time.perf_counter() - start
                        self._delivered = True
                    yield event
            if chunk is None:
                parser.at_end()
                break
        if not state.complete:
            raise self._fail(ProviderError(ErrorClass.CONNECTION,
                                           "stream ended before its final event"))
        self.result = state.result(time.perf_counter() - start, self.first_token_s)
        yield Done(result=self.result)

    def _parse(self, parser: StreamParser, name: str, data: str) -> list[Event]:
        try:
            return parser.feed(name, data)  # type: ignore[return-value]
        except BadBody as exc:
            raise self._fail(ProviderError(ErrorClass.INVALID_RESPONSE,
                                           f"stream event: {exc}")) from None
        except ErrorEvent as exc:
            error_class, message, status = event_error(exc.body)
            raise self._fail(ProviderError(error_class, message, status=status)) from None
