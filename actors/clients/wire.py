"""What all wire clients share: checks before sending, one HTTP attempt, error mapping, secrets.

A provider module only says what its JSON looks like (`build` and `parse_ok`, both pure, so
they are tested against captured bodies without a network). Limits, exceptions, error bodies
and the API key are handled here, once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import aiohttp
import httpx

from actors.clients.base import Completion, Result
from actors.clients.http import ON_SENT, make_transport, request_extensions
from actors.config import ProviderSpec
from actors.cost import cost_usd
from actors.errors import ErrorClass, ProviderError, classify_status, parse_retry_after
from actors.tokens import estimate_messages

#: Longest provider error text kept in a ProviderError (they can carry whole prompts back).
MAX_DETAIL = 300

Request = tuple[str, dict[str, str], dict[str, Any]]
"""(url, headers, json body) of one attempt."""

_TOO_LONG = re.compile(
    r"context.length|context.window|prompt is too long|maximum number of tokens|"
    r"too large for model|reduce the length",
    re.IGNORECASE,
)


class BadBody(Exception):
    """A success status with a body we cannot use; becomes INVALID_RESPONSE in `parse`."""


class _Secret:
    """Holds the API key so that repr(), vars() and tracebacks show stars instead."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def check_limits(spec: ProviderSpec, completion: Completion) -> int:
    """The attempt's max_tokens; refuse what the model cannot take before paying for it."""
    max_tokens = completion.max_tokens or spec.max_output_tokens
    if max_tokens > spec.max_output_tokens:
        raise ProviderError(
            ErrorClass.BAD_REQUEST,
            f"max_tokens {max_tokens} exceeds the model's limit of {spec.max_output_tokens}",
            provider=spec.name,
        )
    prompt = estimate_messages(completion.messages)
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
    """A token count; `default` for formats that omit zero values (Gemini)."""
    if default is not None and key not in obj:
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
) -> Result:
    return Result(
        provider=spec.name,
        model=spec.model,
        text=text,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish_reason,
        latency_s=max(latency_s, 0.0),
        raw_id=raw_id if isinstance(raw_id, str) else "",
        cost_usd=cost_usd(spec, input_tokens, output_tokens),
    )


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:MAX_DETAIL] or "(empty body)"


def error_detail(body: bytes) -> tuple[str, str]:
    """(kind, message) from any of the three error bodies, or a snippet of a foreign one.

    Anthropic: error.type; OpenAI: error.code or error.type; Gemini: error.status.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return "", _snippet(body)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return "", err[:MAX_DETAIL]
    if not isinstance(err, dict):
        return "", _snippet(body)
    kind = next((v for k in ("code", "status", "type") if isinstance(v := err.get(k), str)), "")
    message = err.get("message")
    if not isinstance(message, str) or not message:
        message = _snippet(body)
    if "API_KEY_INVALID" in body.decode("utf-8", "replace"):
        kind = "API_KEY_INVALID"  # Gemini says 400 for a bad key; the reason is in details
    return kind, message[:MAX_DETAIL]


def refine(error_class: ErrorClass, kind: str, message: str) -> ErrorClass:
    """Correct what the status alone gets wrong, from the provider's own words."""
    if error_class is ErrorClass.BAD_REQUEST:
        if kind == "API_KEY_INVALID":
            return ErrorClass.AUTH
        if kind == "context_length_exceeded" or _TOO_LONG.search(message):
            return ErrorClass.CONTEXT_TOO_LONG
    if kind == "overloaded_error" and error_class is ErrorClass.SERVER:
        return ErrorClass.OVERLOADED
    return error_class


def transport_error_class(exc: Exception) -> ErrorClass:
    """TIMEOUT or CONNECTION for a failed exchange.

    httpx-aiohttp 0.2 maps every aiohttp connection error, a refused connection included,
    to `httpx.ConnectTimeout`; the original aiohttp exception it chains is the truth.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return ErrorClass.TIMEOUT if isinstance(cause, TimeoutError) else ErrorClass.CONNECTION
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ErrorClass.TIMEOUT
    return ErrorClass.CONNECTION


@functools.lru_cache(maxsize=64)
def parsed_url(url: str) -> httpx.URL:
    """Each provider posts to one or two URLs; parsing them every attempt costs ~25 µs."""
    return httpx.URL(url)


class WireClient(ABC):
    """One provider's wire client: `send(completion) -> Result` or a classified ProviderError.

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
        if base_url is not None:
            spec = spec.model_copy(update={"base_url": base_url.rstrip("/")})
        self.spec = spec
        self._key = _Secret(api_key) if api_key else None
        self._transport = transport or make_transport(spec)
        self._extensions = request_extensions(spec)

    def __repr__(self) -> str:
        s = self.spec
        return f"{type(self).__name__}(provider={s.name!r}, model={s.model!r}, base_url={s.base_url!r})"

    # -- the wire format: pure, one pair per provider -------------------------------------

    @staticmethod
    @abstractmethod
    def build(spec: ProviderSpec, completion: Completion, api_key: str) -> Request:
        """(url, headers, json body) of one attempt; raises ProviderError for what cannot fit."""

    @staticmethod
    @abstractmethod
    def parse_ok(spec: ProviderSpec, data: dict[str, Any], latency_s: float) -> Result:
        """The Result in a success body; raises BadBody for anything missing or malformed."""

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
                f"body is not JSON: {_snippet(body)[:100]}",
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
        kind, message = error_detail(body)
        error_class = refine(classify_status(status), kind, message)
        if not isinstance(headers, httpx.Headers):
            headers = httpx.Headers(headers)  # case-insensitive lookups
        return ProviderError(
            error_class,
            f"{kind}: {message}" if kind else message,
            provider=spec.name,
            status=status,
            retry_after=parse_retry_after(headers),
        )

    # -- one attempt ------------------------------------------------------------------------

    async def send(self, completion: Completion,
                   on_sent: Callable[[], None] | None = None) -> Result:
        """One attempt; no retries here (the provider actor decides those from the class).

        `on_sent()` runs when the body has gone to the socket (aiohttp transports only).
        """
        spec = self.spec
        if self._key is None:
            raise ProviderError(
                ErrorClass.AUTH, f"no API key: set ${spec.api_key_env}", provider=spec.name
            )
        url, headers, body = self.build(spec, completion, self._key.value)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        request = httpx.Request(
            "POST", parsed_url(url), headers=headers, content=content, extensions=self._extensions
        )
        start = time.perf_counter()
        token = ON_SENT.set(on_sent)
        try:
            async with asyncio.timeout(spec.timeout_s):
                response = await self._transport.handle_async_request(request)
                try:
                    data = await response.aread()
                finally:
                    await response.aclose()  # back to the pool, or closed if unread
        except (httpx.TransportError, aiohttp.ClientError, OSError) as exc:
            error_class = transport_error_class(exc)
            if error_class is ErrorClass.TIMEOUT:
                message = f"timed out ({type(exc).__name__}; attempt limit {spec.timeout_s:g} s)"
            else:
                message = f"{type(exc).__name__}: {self._scrub(str(exc))}"[:MAX_DETAIL]
            raise ProviderError(error_class, message, provider=spec.name) from None
        finally:
            ON_SENT.reset(token)
        latency_s = time.perf_counter() - start
        try:
            return self.parse(spec, response.status_code, response.headers, data, latency_s)
        except ProviderError as exc:
            if self._key.value not in exc.message:
                raise
            raise ProviderError(  # a provider that echoes the key back
                exc.error_class,
                self._scrub(exc.message),
                provider=exc.provider,
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None

    def _scrub(self, text: str) -> str:
        """Belt and braces: no message may ever carry the key out."""
        return text.replace(self._key.value, "***") if self._key else text

    async def aclose(self) -> None:
        await self._transport.aclose()
