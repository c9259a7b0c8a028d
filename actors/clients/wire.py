"""What all wire clients share: checks before sending, one HTTP attempt, error mapping, secrets.

A provider module only says what its JSON looks like (`build`, `parse_ok` and a stream
parser, all pure, so they are tested against captured bodies without a network). Limits,
exceptions, error bodies and the API key are handled here, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx

from actors.clients.base import Choice, Completion, Result, TokenLogprob, ToolCall
from actors.clients.capabilities import dialect, unsupported
from actors.clients.faults import (
    MAX_DETAIL,
    TRANSPORT_ERRORS,
    BadBody,
    snippet,
    status_error,
    transport_error_class,
)
from actors.clients.http import ON_SENT, make_transport, parsed_url, request_extensions
from actors.clients.stream import StreamParser
from actors.clients.streaming import WireStream
from actors.config import ProviderSpec
from actors.core.cost import cost_usd
from actors.core.errors import ErrorClass, ProviderError
from actors.core.tokens import estimate_messages, estimate_tools

__all__ = ["BadBody", "Request", "WireClient", "check_limits", "count", "make_result", "need"]

Request = tuple[str, dict[str, str], dict[str, Any]]
"""(url, headers, json body) of one attempt."""


class _Secret:
    """Holds the API key so that repr(), vars() and tracebacks show stars instead."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def check_limits(spec: ProviderSpec, completion: Completion) -> int:
    """The attempt's max_tokens; refuse what the model cannot take before paying for it,
    and any parameter it cannot honour (the router excludes such providers first; this is
    the last guard against dropping one silently)."""
    refused = unsupported(spec, completion)
    if refused:
        raise ProviderError(ErrorClass.BAD_REQUEST, "; ".join(
            f"{u.param}: {u.reason}" for u in refused), provider=spec.name)
    max_tokens = completion.max_tokens or spec.max_output_tokens
    if max_tokens > spec.max_output_tokens:
        raise ProviderError(
            ErrorClass.BAD_REQUEST,
            f"max_tokens {max_tokens} exceeds the model's limit of {spec.max_output_tokens}",
            provider=spec.name,
        )
    prompt = estimate_messages(completion.messages) + estimate_tools(completion.tools)
    if prompt > spec.max_input_tokens:
        raise ProviderError(
            ErrorClass.CONTEXT_TOO_LONG,
            f"prompt of ~{prompt} tokens (estimated) exceeds the model's {spec.max_input_tokens}",
            provider=spec.name,
        )
    return max_tokens


def need(obj: Any, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """`obj[key]` if it exists and has the expected type, else BadBody naming the field."""
    path = f"{where}.{key}" if where else key
    if not isinstance(obj, dict) or key not in obj:
        raise BadBody(f"missing field '{path}'")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadBody(f"field '{path}' has unexpected type {type(value).__name__}")
    return value


def count(obj: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    """A token count; `default` for formats that omit zero values (Gemini) or null them."""
    if default is not None and obj.get(key) is None:
        return default
    value = need(obj, key, int, where)
    if value < 0:
        raise BadBody(f"field '{where}.{key}' is negative")
    return value


def make_result(
    spec: ProviderSpec,
    *,
    text: str,
    input_tokens: int,
    output_tokens: int,
    finish_reason: str,
    latency_s: float,
    raw_id: Any = "",
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    tool_calls: list[ToolCall] | None = None,
    logprobs: list[TokenLogprob] | None = None,
    choices: list[Choice] | None = None,
) -> Result:
    if cached_input_tokens + cache_write_tokens > input_tokens:
        raise BadBody(f"cached ({cached_input_tokens}) and cache-write ({cache_write_tokens}) "
                      f"tokens exceed the prompt's {input_tokens}")
    extra: dict[str, Any] = {}  # only what is set: each field passed costs validation time
    if cached_input_tokens:
        extra["cached_input_tokens"] = cached_input_tokens
    if cache_write_tokens:
        extra["cache_write_tokens"] = cache_write_tokens
    if reasoning_tokens:
        extra["reasoning_tokens"] = min(reasoning_tokens, output_tokens)
    if tool_calls:
        extra["tool_calls"] = tool_calls
    if logprobs is not None:
        extra["logprobs"] = logprobs
    if choices is not None:
        extra["choices"] = choices
    return Result(
        provider=spec.name,
        model=spec.model,
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish_reason,
        latency_s=max(latency_s, 0.0),
        raw_id=raw_id if isinstance(raw_id, str) else "",
        cost_usd=cost_usd(spec, input_tokens, output_tokens, cached_input_tokens,
                          cache_write_tokens),
        **extra,
    )


class WireClient(ABC):
    """One provider's wire client: `send(completion) -> Result` or a classified ProviderError;
    `send_stream(completion)` for the same answer as events while it is generated.

    One instance per provider, long-lived, used from one event loop; `aclose()` when done.
    """

    api: ClassVar[str] = ""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        api_key: str | None,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if spec.api == "openai" and spec.dialect is None:
            # pinned from the configured host: a substituted URL (the simulator) keeps it
            spec = spec.model_copy(update={"dialect": dialect(spec)})
        if base_url is not None:
            spec = spec.model_copy(update={"base_url": base_url.rstrip("/")})
        self.spec = spec
        self._key = _Secret(api_key) if api_key else None
        self._transport = transport or make_transport(spec)
        self._extensions = request_extensions(spec)

    def __repr__(self) -> str:
        s = self.spec
        return f"{type(self).__name__}(provider={s.name!r}, model={s.model!r}, base_url={s.base_url!r})"

    # -- the wire format: pure, one set per provider ----------------------------------------

    @staticmethod
    @abstractmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str,
              stream: bool = False) -> Request:
        """(url, headers, json body) of one attempt; raises ProviderError for what cannot fit."""

    @staticmethod
    @abstractmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        """The Result in a success body; raises BadBody for anything missing or malformed."""

    @staticmethod
    @abstractmethod
    def stream_parser(spec: ProviderSpec, completion: Completion) -> StreamParser:
        """A parser for one streamed answer's events."""

    @classmethod
    def parse(
        cls,
        spec: ProviderSpec,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        latency_s: float,
    ) -> Result:
        """The Result of one HTTP exchange, or the ProviderError it amounts to."""
        if not 200 <= status < 300:
            raise cls.error(spec, status, headers, body)
        try:
            data = json.loads(body)
        except ValueError:
            raise ProviderError(
                ErrorClass.INVALID_RESPONSE,
                f"body is not JSON: {snippet(body)[:100]}",
                provider=spec.name,
                status=status,
            ) from None
        try:
            if not isinstance(data, dict):
                raise BadBody(f"body is a JSON {type(data).__name__}, not an object")
            return cls.parse_ok(spec, data, latency_s)
        except BadBody as exc:
            raise ProviderError(
                ErrorClass.INVALID_RESPONSE, str(exc), provider=spec.name, status=status
            ) from None

    @staticmethod
    def error(
        spec: ProviderSpec, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        """The ProviderError of an error status, with the provider's message and Retry-After."""
        return status_error(spec.name, status, headers, body)

    # -- one attempt ------------------------------------------------------------------------

    def request(self, completion: Completion, stream: bool = False) -> httpx.Request:
        """The HTTP request of one attempt (AUTH error without a key: nothing is sent)."""
        spec = self.spec
        if self._key is None:
            raise ProviderError(
                ErrorClass.AUTH, f"no API key: set ${spec.api_key_env}", provider=spec.name
            )
        url, headers, body = self.build(spec, completion, self._key.value, stream)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return httpx.Request(
            "POST", parsed_url(url), headers=headers, content=content, extensions=self._extensions
        )

    def transport_failure(self, exc: Exception) -> ProviderError:
        error_class = transport_error_class(exc)
        if error_class is ErrorClass.TIMEOUT:
            message = f"timed out ({type(exc).__name__}; attempt limit {self.spec.timeout_s:g} s)"
        else:
            message = f"{type(exc).__name__}: {self.scrub(str(exc))}"[:MAX_DETAIL]
        return ProviderError(error_class, message, provider=self.spec.name)

    async def send(self, completion: Completion,
                   on_sent: Callable[[], None] | None = None) -> Result:
        """One attempt; no retries here (the provider actor decides those from the class).

        `on_sent()` runs when the body has gone to the socket (aiohttp transports only).
        """
        spec = self.spec
        request = self.request(completion)
        start = time.perf_counter()
        token = ON_SENT.set(on_sent)
        try:
            async with asyncio.timeout(spec.timeout_s):
                response = await self._transport.handle_async_request(request)
                try:
                    data = await response.aread()
                finally:
                    await response.aclose()  # back to the pool, or closed if unread
        except TRANSPORT_ERRORS as exc:  # asyncio's TimeoutError is an OSError
            raise self.transport_failure(exc) from None
        finally:
            ON_SENT.reset(token)
        latency_s = time.perf_counter() - start
        try:
            return self.parse(spec, response.status_code, response.headers, data, latency_s)
        except ProviderError as exc:
            raise self.scrubbed(exc) from None

    def send_stream(self, completion: Completion,
                    on_sent: Callable[[], None] | None = None) -> WireStream:
        """One streamed attempt: an async iterator of TextDelta / ToolCallDelta / Finish events
        ending with Done(result). Nothing is sent before the first `__anext__`; `aclose()`
        cancels it (the connection is dropped, so the provider stops generating).

        Errors before the first event are the ProviderErrors `send` raises; after it,
        StreamError (with `started` and the partial, estimated result).
        """
        return WireStream(self, completion, on_sent)

    def scrubbed(self, exc: ProviderError) -> ProviderError:
        """`exc`, or a copy without the key if a provider echoed it back."""
        if self._key is None or self._key.value not in exc.message:
            return exc
        return ProviderError(exc.error_class, self.scrub(exc.message), provider=exc.provider,
                             status=exc.status, retry_after=exc.retry_after)

    def scrub(self, text: str) -> str:
        """Belt and braces: no message may ever carry the key out."""
        return text.replace(self._key.value, "***") if self._key else text

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        return self._transport

    async def aclose(self) -> None:
        await self._transport.aclose()
