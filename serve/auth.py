"""Optional bearer-token auth: a client token for every endpoint, an admin token for admin ones.

Tokens come from environment variables named in `serve.auth` and are read once per replica.
With neither set the endpoint is open (local use); with any set, admin endpoints need the admin
token. Comparison is constant-time; tokens never appear in answers or logs.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from fastapi import Request

from serve.errors import ApiError
from serve.spec import AuthSpec

_CHALLENGE = {"www-authenticate": "Bearer"}


@dataclass(frozen=True)
class Tokens:
    client: str | None
    admin: str | None
    admin_env: str

    @classmethod
    def from_env(cls, spec: AuthSpec) -> Tokens:
        return cls(os.environ.get(spec.token_env) or None,
                   os.environ.get(spec.admin_token_env) or None, spec.admin_token_env)

    @property
    def enabled(self) -> bool:
        return bool(self.client or self.admin)


def _bearer(request: Request) -> str | None:
    raw = request.headers.get("authorization")
    if not raw:
        return None
    scheme, _, value = raw.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else ""


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def check(tokens: Tokens, presented: str | None, *, admin: bool) -> None:
    """Raise the 401/403 ApiError this request deserves, or return if it may pass."""
    if not tokens.enabled:
        return
    if admin:
        if tokens.admin is None:
            raise ApiError(403, "permission_error", f"admin endpoints are disabled: set "
                           f"${tokens.admin_env} on the server to enable them", None,
                           "admin_disabled")
        if _same(presented, tokens.admin):
            return
        if _same(presented, tokens.client):
            raise ApiError(403, "permission_error", "this endpoint needs the admin token",
                           None, "admin_required")
    elif tokens.client is None or _same(presented, tokens.client) or _same(presented, tokens.admin):
        return
    if presented is None:
        msg = "missing bearer token: send 'Authorization: Bearer <token>'"
    elif presented == "":
        msg = "malformed Authorization header: expected 'Bearer <token>'"
    else:
        msg = "invalid bearer token"
    raise ApiError(401, "authentication_error", msg, None, "invalid_api_key", dict(_CHALLENGE))


async def require_client(request: Request) -> None:
    """FastAPI dependency for ordinary endpoints."""
    check(request.app.state.tokens, _bearer(request), admin=False)


async def require_admin(request: Request) -> None:
    """FastAPI dependency for admin endpoints (breaker reset)."""
    check(request.app.state.tokens, _bearer(request), admin=True)


async def require_health(request: Request) -> None:
    """/healthz: open when `auth.public_health`, else like any endpoint."""
    if not request.app.state.public_health:
        check(request.app.state.tokens, _bearer(request), admin=False)
