"""Optional bearer-token auth: a client token for every endpoint, an admin token for admin ones.

Tokens come from environment variables named in `serve.auth` and are read once per replica.
Checked in an ASGI middleware (serve/middleware.py) before any routing: unknown paths get
401 too, and a FastAPI dependency per route would cost ~8% of a replica's CPU per request.
With neither set the endpoint is open (local use); with any set, admin endpoints need the admin
token. Comparison is constant-time; tokens never appear in answers or logs.
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass

from serve.errors import ApiError
from serve.spec import AuthSpec

_CHALLENGE = {"www-authenticate": "Bearer"}
#: Admin endpoints; everything else needs the client token (or the admin one).
ADMIN_PATH = re.compile(r"^/v1/providers/[^/]+/reset/?$")


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


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The presented token: None if no Authorization header, "" if it is not a bearer."""
    for key, value in headers:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def needs(method: str, path: str, public_health: bool) -> str | None:
    """What a route needs: "admin", "client" or None (public)."""
    if path == "/healthz" and public_health:
        return None
    if method == "POST" and ADMIN_PATH.match(path):
        return "admin"
    if method == "PUT" and path == "/v1/budgets":
        return "admin"
    return "client"


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
