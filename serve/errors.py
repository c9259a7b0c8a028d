"""Every failure becomes an OpenAI-style JSON error: `{"error": {"type", "message", "param", "code"}}`.

The router's `RoutingError` classes map to statuses here and only here; handlers installed on
the app make sure a client never sees a stack trace, whatever went wrong.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.core.errors import ErrorClass
from actors.routing.route import RoutingError

log = logging.getLogger(__name__)
#: Set on every answer (and error) the built-in simulator made up.
SIMULATED_HEADER = "x-router-simulated"
#: The stored outcome of an earlier request with the same id (nothing was called or paid).
REPLAYED_HEADER = "x-router-replayed"


class ApiError(Exception):
    """An error answer: status, OpenAI-style type, human message, offending parameter."""

    def __init__(self, status: int, type_: str, message: str, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message
        self.param, self.code, self.headers = param, code, headers or {}
        self.details: dict[str, Any] = {}  # extra keys inside "error"
        self.trace: dict[str, Any] | None = None  # the routing trace, beside "error"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": {"type": self.type, "message": self.message,
                                         "param": self.param, "code": self.code, **self.details}}
        if self.trace is not None:
            out["router"] = {"trace": self.trace}
        return out

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param, code)


def not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, "not_found_error", message, param, "not_found")


def _reasons(exc: RoutingError, wanted: list[str] | None = None) -> dict[str, str]:
    """Per-provider reasons: exclusions before dispatch, then each provider's last attempt;
    only the providers the request asked for when it named some."""
    out = dict(exc.trace.excluded)
    out.update(_tried(exc))
    return {n: r for n, r in out.items() if n in wanted} if wanted else out


def _tried(exc: RoutingError) -> dict[str, str]:
    return {a.provider: f"{a.error_class}: {a.error}" if a.error_class else (a.error or "failed")
            for a in exc.trace.attempts}


def _only(reasons: dict[str, str], prefix: str | tuple[str, ...]) -> bool:
    return bool(reasons) and all(r.startswith(prefix) for r in reasons.values())


def from_routing_error(exc: RoutingError, wanted: list[str] | None = None,
                       fits_nowhere: bool = False) -> ApiError:
    """The HTTP answer for a request the router could not serve.

    `wanted`: the providers the request pinned (provider + fallbacks), whose reasons decide
    between "your request cannot fit" (400) and "nobody can answer now" (503).
    `fits_nowhere`: the prompt is above every candidate's window even where another reason
    (say, a budget) excluded the provider first.
    """
    cls, msg = exc.error_class, exc.message
    reasons = _reasons(exc, wanted)
    untried = cls is ErrorClass.NO_PROVIDER and not exc.trace.attempts
    if cls is ErrorClass.BAD_REQUEST:
        param = exc.param or ("model" if "unknown provider" in msg or "unknown policy" in msg
                              else None)
        err = ApiError(400, "invalid_request_error", msg, param,
                       "unsupported_parameter" if exc.param else cls.value)
    elif cls is ErrorClass.CONTEXT_TOO_LONG or (untried and (
            fits_nowhere or _only(reasons, "context_too_long"))):
        err = ApiError(400, "context_too_long", "the prompt is larger than the context window "
                       f"of every provider that could take it — {_join(reasons)}", "messages",
                       "context_length_exceeded")
    elif untried and _only(reasons, "max_tokens"):
        err = ApiError(400, "invalid_request_error", "max_tokens is above the output limit "
                       f"of every provider that could take it — {_join(reasons)}", "max_tokens",
                       "max_tokens_too_large")
    elif cls is ErrorClass.IDEMPOTENCY_CONFLICT:  # the id names another request: not retryable
        err = ApiError(409, "idempotency_conflict", msg, "request_id", cls.value)
    elif cls is ErrorClass.CACHE_MISS:  # cache "only": nothing was called
        err = ApiError(404, "cache_miss", msg, "cache", cls.value)
    elif cls is ErrorClass.BUDGET_EXCEEDED:
        err = ApiError(402, "budget_exceeded", msg, None, cls.value)
    elif cls in (ErrorClass.DEADLINE, ErrorClass.TIMEOUT) or (
            cls is ErrorClass.NO_PROVIDER and _only(_tried(exc), ("deadline", "timeout"))):
        err = ApiError(504, "deadline_exceeded", msg, "timeout", cls.value)
    elif cls is ErrorClass.INTERNAL:
        err = ApiError(500, "internal_error", _no_trace(msg), None, cls.value)
    else:  # no_provider, breaker_open and every provider failing
        err = ApiError(503, "no_provider_available", msg, None, cls.value)
    err.headers["x-router-request-id"] = exc.trace.request_id
    if exc.trace.simulated:
        err.headers[SIMULATED_HEADER] = "true"
    if exc.trace.replayed:
        err.headers[REPLAYED_HEADER] = "true"
    err.details = {"providers": _reasons(exc), "request_id": exc.trace.request_id}
    err.trace = exc.trace.model_dump(mode="json")
    return err


def _join(reasons: dict[str, str]) -> str:
    return "; ".join(f"{n}: {r}" for n, r in reasons.items())


def _no_trace(msg: str) -> str:
    return msg.split("\nTraceback", 1)[0].split("\n", 1)[0][:500]


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "dict", "list"}


def _is_field(part: Any) -> bool:
    """Loc entries that name a field or index, not pydantic's union-member tags
    (`str`, `list[TextPart]`, `TextPart`, `function-after[...]`)."""
    if isinstance(part, int):
        return True
    p = str(part)
    return p not in _TYPE_TAGS and p[:1].islower() and not any(c in p for c in "[(-")


def _param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header") and _is_field(p)]
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def from_validation(errors: list[dict[str, Any]]) -> ApiError:
    """Pydantic/FastAPI validation errors → 400 naming the first bad field."""
    if not errors:
        return bad_request("invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return bad_request(f"request body is not valid JSON: {ctx.get('error', 'parse error')}",
                           None, "json_invalid")
    loc = first.get("loc", ())
    param = _param(loc)
    if param is None and first.get("type") in ("missing", "model_attributes_type", "dict_type"):
        return bad_request("the request body must be a JSON object (Content-Type: "
                           "application/json)", None, "invalid_body")
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = f"unsupported parameter {param!r}"
    elif first.get("type") == "missing":
        msg = f"missing required parameter {param!r}"
    else:
        msg = f"{param}: {msg}" if param else msg
    more = len(errors) - 1
    if more > 0:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return bad_request(msg, param, str(first.get("type", "invalid_value")))


_STATUS_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 405: "invalid_request_error", 413: "request_too_large",
                 415: "invalid_request_error"}


def install(app: FastAPI) -> None:
    """Exception handlers: every error answer is JSON in the one shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RoutingError)
    async def _routing(_: Request, exc: RoutingError) -> JSONResponse:
        return from_routing_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return from_validation(list(exc.errors())).response()

    @app.exception_handler(ValidationError)
    async def _invalid_model(_: Request, exc: ValidationError) -> JSONResponse:
        return from_validation(exc.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "invalid_request_error"
                                  if exc.status_code < 500 else "internal_error")
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return ApiError(exc.status_code, type_, detail, None, None,
                        dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError(500, "internal_error", f"internal error ({type(exc).__name__}); "
                        "see the server log", None, "internal").response()
