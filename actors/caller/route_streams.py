"""`llm.stream(...)`: a routed answer as it arrives, in the Python API.

    async with llm.stream("Is SPY bullish?", max_tokens=200) as s:
        async for ev in s:                 # TextDelta / ToolCallDelta / Finish events
            print(ev.text, end="") if ev.type == "text" else None
    s.result.cost_usd, s.result.trace      # the RouteResult, once the stream ended

`llm.stream_sync(...)` is the blocking twin for scripts without asyncio: a plain iterator
over the router's Ray streaming-generator call (the same events, `.result` at the end).

Fallback happens only before the first token; after it an error ends the stream with a
RoutingError. Closing the stream early (leaving the `async with`, `aclose()`, or a
cancelled task) stops the provider generating; what it billed is still recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from pydantic import BaseModel

from actors.caller.outputs import as_model
from actors.clients.stream import TextDelta
from actors.core.errors import ErrorClass, task_cause
from actors.routing.route import RouteRequest, RouteResult, RoutingError, RoutingTrace
from actors.routing.router_stream import StreamStart
from actors.rpc.channel import ChannelBroken


class _Seen:
    """What a stream of the router's items has shown so far, async or blocking alike:
    `start` (who answers) once the first event came, `result` (the RouteResult, `parsed`
    built as for `complete`) at the end, choice 0's text in between."""

    def __init__(self, req: RouteRequest, cls: type[BaseModel] | None) -> None:
        self.request = req
        self._cls = cls
        self.start: StreamStart | None = None
        self.result: RouteResult | None = None
        self._text: list[str] = []

    @property
    def text(self) -> str:
        """Choice 0's text so far."""
        return "".join(self._text)

    def _see(self, item: Any) -> bool:
        """Take one item from the router; True when it is an event for the caller."""
        if isinstance(item, StreamStart):
            self.start = item
        elif isinstance(item, RouteResult):
            self.result = as_model(item, self._cls)
        else:
            if isinstance(item, TextDelta) and item.choice == 0:
                self._text.append(item.text)
            return True
        return False


class RouteStream(_Seen):
    """Async iterator of one request's stream events (`start`, `result`, `text`: _Seen)."""

    def __init__(self, open_source: Callable[[], AsyncIterator[Any]], req: RouteRequest,
                 cls: type[BaseModel] | None) -> None:
        super().__init__(req, cls)
        self._open = open_source
        self._source: AsyncIterator[Any] | None = None

    def __aiter__(self) -> RouteStream:
        return self

    async def __anext__(self) -> Any:
        if self._source is None:
            self._source = self._open()
        while True:
            try:
                item = await anext(self._source)
            except ChannelBroken as exc:
                raise RoutingError(ErrorClass.INTERNAL, f"{exc}; request "
                                   f"{self.request.request_id} has an unknown outcome",
                                   RoutingTrace(request_id=self.request.request_id or "",
                                                policy=self.request.policy or "")) from None
            if self._see(item):
                return item

    async def aclose(self) -> None:
        if self._source is not None:
            await self._source.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> RouteStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class SyncRouteStream(_Seen):
    """The blocking twin of RouteStream: iterate it in plain Python (`for ev in s`)."""

    def __init__(self, router: Any, req: RouteRequest, cls: type[BaseModel] | None) -> None:
        super().__init__(req, cls)
        self._router = router

    def __iter__(self) -> Iterator[Any]:
        import ray

        gen = self._router.chan_stream.options(num_returns="streaming").remote(self.request)
        finished = False
        try:
            for ref in gen:
                try:
                    item = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise task_cause(exc) from None
                if self._see(item):
                    yield item
            finished = True
        finally:
            if not finished:  # left early: the router closes the provider's stream
                ray.cancel(gen)
