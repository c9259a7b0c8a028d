"""How a failed exchange is classified, from any of the three vendors' error shapes: an error
status with its body, an error event in the middle of a stream, or a broken connection."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import aiohttp
import httpx

from actors.core.errors import ErrorClass, ProviderError, classify_status, parse_retry_after

#: Longest provider error text kept in a ProviderError (they can carry whole prompts back).
MAX_DETAIL = 300

_TOO_LONG = re.compile(
    r"context.length|context.window|prompt is too long|maximum number of tokens|"
    r"too large for model|reduce the length",
    re.IGNORECASE,
)

#: The status a vendor's error kind stands for, for errors that arrive without one (an error
#: event inside a 200 stream): Anthropic error types, Gemini status names, OpenAI types/codes.
KIND_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
    "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
    "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "rate_limit_exceeded": 429, "server_error": 500, "service_unavailable": 503,
}  # fmt: skip


class BadBody(Exception):
    """A success status (or stream event) we cannot use; becomes INVALID_RESPONSE."""


class ErrorEvent(Exception):
    """An error event inside a stream; `body` is its JSON, in the vendor's error shape."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body[:MAX_DETAIL])
        self.body = body


def snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:MAX_DETAIL] or "(empty body)"


def error_detail(body: bytes) -> tuple[str, str]:
    """(kind, message) from any of the three error bodies, or a snippet of a foreign one.

    Anthropic: error.type; OpenAI: error.code or error.type; Gemini: error.status.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return "", snippet(body)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return "", err[:MAX_DETAIL]
    if not isinstance(err, dict):
        return "", snippet(body)
    kind = next((v for k in ("code", "status", "type") if isinstance(v := err.get(k), str)), "")
    message = err.get("message")
    if not isinstance(message, str) or not message:
        message = snippet(body)
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


def status_error(provider: str, status: int, headers: Mapping[str, str],
                 body: bytes) -> ProviderError:
    """The ProviderError of an error status, with the provider's message and Retry-After."""
    kind, message = error_detail(body)
    error_class = refine(classify_status(status), kind, message)
    if not isinstance(headers, httpx.Headers):
        headers = httpx.Headers(headers)  # case-insensitive lookups
    return ProviderError(
        error_class,
        f"{kind}: {message}" if kind else message,
        provider=provider,
        status=status,
        retry_after=parse_retry_after(headers),
    )


def event_error(body: bytes) -> tuple[ErrorClass, str, int | None]:
    """(class, message, status) of an error event in a stream: the status the error's kind
    or code stands for, classified the way an error status would be."""
    kind, message = error_detail(body)
    status: int | None = KIND_STATUS.get(kind)
    if status is None:
        try:
            code = json.loads(body).get("error", {}).get("code")
        except (ValueError, AttributeError):
            code = None
        status = code if isinstance(code, int) and 400 <= code < 600 else None
    error_class = refine(classify_status(status), kind, message) if status else ErrorClass.SERVER
    return error_class, f"{kind}: {message}" if kind else message, status


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


#: What a broken exchange raises, from either layer of the transport.
TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, OSError)
