"""Error classification: every failure becomes one `ProviderError` with an `ErrorClass`.

The class decides what happens next (retry on the same provider, fall back to another,
open the breaker, or give up), so callers never parse status codes or messages themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from enum import StrEnum


class ErrorClass(StrEnum):
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    INVALID_RESPONSE = "invalid_response"
    CONTEXT_TOO_LONG = "context_too_long"
    #: The answer hit the caller's max_tokens before any visible output (e.g. a Gemini 2.5
    #: answer that spent the whole cap thinking). Billed, but not the provider's fault.
    OUTPUT_LIMIT = "output_limit"
    BREAKER_OPEN = "breaker_open"
    BUDGET_EXCEEDED = "budget_exceeded"
    DEADLINE = "deadline"
    NO_PROVIDER = "no_provider"
    INTERNAL = "internal"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    #: The caller went away mid-stream; what the provider sent until then is billed.
    CANCELLED = "cancelled"
    #: cache "only": no cached answer, and no provider may be called.
    CACHE_MISS = "cache_miss"


#: Worth another attempt on the same provider after a backoff.
RETRYABLE: frozenset[ErrorClass] = frozenset(
    {
        ErrorClass.RATE_LIMITED,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
    }
)

#: Worth trying the next provider (the request itself may still be fine).
FALLBACK: frozenset[ErrorClass] = RETRYABLE | {
    ErrorClass.AUTH,
    ErrorClass.INVALID_RESPONSE,
    ErrorClass.CONTEXT_TOO_LONG,
    ErrorClass.OUTPUT_LIMIT,
    ErrorClass.BREAKER_OPEN,
    ErrorClass.BUDGET_EXCEEDED,
    ErrorClass.DEADLINE,
    ErrorClass.INTERNAL,
}

#: Count against the provider's health (breaker and success rate). A bad request or an
#: oversize prompt is the caller's fault, not the provider's.
PROVIDER_FAULT: frozenset[ErrorClass] = RETRYABLE | {ErrorClass.AUTH, ErrorClass.INVALID_RESPONSE}


class ProviderError(Exception):
    """A classified failure of one attempt or one request.

    Messages never contain API keys: clients build them from status codes and the
    provider's own error text only.
    """

    def __init__(
        self,
        error_class: ErrorClass | str,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.error_class = ErrorClass(error_class)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"[{self.provider}] " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{where}{self.error_class.value}{status}: {self.message}"

    def __reduce__(self):  # keep the fields across Ray's pickling
        return (
            _rebuild,
            (self.error_class.value, self.message, self.provider, self.status, self.retry_after),
        )

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE


def _rebuild(cls: str, message: str, provider, status, retry_after) -> ProviderError:
    return ProviderError(cls, message, provider=provider, status=status, retry_after=retry_after)


def task_cause(exc: BaseException) -> BaseException:
    """The callee's own exception inside Ray's RayTaskError wrapper (which keeps it as
    `.cause`), so callers see the router's or tracker's error; the wrapper itself when it
    carries none."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class Refusal(str):
    """Why a provider was not tried, as a typed value: its error class and scope (`*` for
    every provider, else the provider's name). It reads as its message, so traces, records
    and the HTTP error keep their text, while code decides by its fields, never by parsing
    the words."""

    error_class: ErrorClass
    scope: str

    def __new__(cls, message: str, error_class: ErrorClass, scope: str) -> Refusal:
        self = super().__new__(cls, message)
        self.error_class, self.scope = error_class, scope
        return self

    def __getnewargs__(self) -> tuple[str, ErrorClass, str]:  # across Ray's pickling
        return str(self), self.error_class, self.scope

    def error(self, provider: str | None = None) -> ProviderError:
        """The refusal raised: the message keeps the typed value (`ProviderError.message`)."""
        return ProviderError(self.error_class, self, provider=provider)


def refused_for(reasons: Iterable[str], error_class: ErrorClass) -> bool:
    """Whether every reason is a `Refusal` of this class (none: False)."""
    found = False
    for r in reasons:
        if not (isinstance(r, Refusal) and r.error_class is error_class):
            return False
        found = True
    return found


def classify_status(status: int) -> ErrorClass:
    """Map an HTTP status from any provider to an error class."""
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (529, 503):
        return ErrorClass.OVERLOADED
    if status in (401, 403):
        return ErrorClass.AUTH
    if status in (408,):
        return ErrorClass.TIMEOUT
    if status == 413:
        return ErrorClass.CONTEXT_TOO_LONG
    if status == 409:
        return ErrorClass.SERVER
    if 400 <= status < 500:
        return ErrorClass.BAD_REQUEST
    if status >= 500:
        return ErrorClass.SERVER
    return ErrorClass.INVALID_RESPONSE


MAX_RETRY_AFTER_S = 120.0


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or HTTP date).

    Like the official SDKs, a value above two minutes is ignored as implausible.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if 0 <= value <= MAX_RETRY_AFTER_S:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        value = when - (time.time() if now is None else now)
    if value < 0 or value > MAX_RETRY_AFTER_S:
        return None
    return value
