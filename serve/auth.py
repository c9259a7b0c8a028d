"""Bearer-token auth that fails closed: a client token for every route, an admin one for admin
routes, and anonymous access only when the config asks for it on a loopback address.

Tokens are read where the app is built (`serve.app:build`, which `llm-router serve`, `serve
run` and `serve deploy` all go through), from the variable or 0600 file the config names.
Only a keyed hash (a MAC: BLAKE2b with a random key per build) of each token travels to the
replicas, as a deployment argument: nothing in `runtime_env` (which Ray shows in its dashboard
and logs) and nothing a replica could echo. A replica compares MACs of presented tokens in
constant time (keyed BLAKE2b: ~1 µs a request, a third of HMAC-SHA256's here).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from actors.config import ConfigError
from serve.errors import ApiError
from serve.spec import AuthSpec

MIN_TOKEN_CHARS = 16
_CHALLENGE = {"www-authenticate": "Bearer"}
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Access(enum.Enum):
    """What a route needs."""

    PUBLIC = "public"
    CLIENT = "client"
    ADMIN = "admin"


class AuthDigests(BaseModel):
    """What the replicas learn about the tokens: keyed MACs, never the tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    salt: str = Field(description="Hex key of the MACs; random per build.")
    client: str | None = Field(description="MAC of the client token; None = anonymous.")
    admin: str | None = Field(description="MAC of the admin token; None = admin disabled.")
    admin_source: str = Field(description="Where an operator sets the admin token (for the "
                              "403 message).")

    @property
    def anonymous(self) -> bool:
        return self.client is None


def _mac(salt: bytes, token: str) -> bytes:
    return hashlib.blake2b(token.encode(), key=salt, digest_size=32).digest()


def _read_file(path: str, key: str) -> str:
    """A token file's content; refuses files others can read, naming the file."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"serve.auth.{key}: cannot read {p} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"serve.auth.{key}: {p} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(f"serve.auth.{key}: {p} is readable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {p}`")
    try:
        return p.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"serve.auth.{key}: cannot read {p} ({exc})") from None


def read_token(env_name: str, file: str | None, file_key: str,
               env: Mapping[str, str]) -> tuple[str | None, str]:
    """`(token or None, where it comes from)`; the file wins over the variable when set."""
    if file is not None:
        source = f"serve.auth.{file_key} ({file})"
        token = _read_file(file, file_key)
        if not token:
            raise ConfigError(f"{source} is empty")
    else:
        source = f"${env_name}"
        token = env.get(env_name) or None
    if token is not None:
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"the token in {source} has {len(token)} characters; use at "
                              f"least {MIN_TOKEN_CHARS} random ones, e.g. `{_MAKE_ONE}`")
        if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise ConfigError(f"the token in {source} must be printable ASCII without spaces")
    return token, source


def digests(spec: AuthSpec, env: Mapping[str, str] | None = None) -> AuthDigests:
    """Read both tokens and return their MACs; refuse to go on without a client token
    unless the config explicitly allows anonymous access."""
    env = os.environ if env is None else env
    client, client_src = read_token(spec.token_env, spec.token_file, "token_file", env)
    admin, admin_src = read_token(spec.admin_token_env, spec.admin_token_file,
                                  "admin_token_file", env)
    if client is None and not spec.anonymous:
        raise ConfigError(
            f"refusing to serve without a client token: set {client_src} (serve.auth."
            "token_env) or serve.auth.token_file — or, for use on this machine only, set "
            "serve.auth.anonymous: true and bind a loopback address")
    if client is not None and client == admin:
        raise ConfigError(f"the client token ({client_src}) and the admin token ({admin_src}) "
                          "must differ: every client could change budgets otherwise")
    salt = secrets.token_bytes(32)  # BLAKE2b takes keys up to 64 bytes
    return AuthDigests(salt=salt.hex(), client=_mac(salt, client).hex() if client else None,
                       admin=_mac(salt, admin).hex() if admin else None,
                       admin_source=admin_src if spec.admin_token_file else
                       f"{admin_src} (serve.auth.admin_token_env) or serve.auth.admin_token_file")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_loopback(auth: AuthDigests, host: str | None) -> None:
    """Anonymous access is for this machine only: refuse any other bind address."""
    if auth.anonymous and not is_loopback(host):
        raise ConfigError(
            f"serve.auth.anonymous: true needs a loopback bind address (127.0.0.1, ::1 or "
            f"localhost), not {host or 'every interface'!r} (http_options.host / --host); "
            "set a client token to listen beyond this machine")


def bearer(value: str | None) -> str | None:
    """The presented token: None if no Authorization header, "" if it is not a bearer."""
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclass(frozen=True)
class Verifier:
    """The replica's side: checks a presented token against the MACs, in constant time."""

    salt: bytes
    client: bytes | None
    admin: bytes | None
    admin_source: str

    @classmethod
    def from_digests(cls, d: AuthDigests) -> Verifier:
        return cls(bytes.fromhex(d.salt), bytes.fromhex(d.client) if d.client else None,
                   bytes.fromhex(d.admin) if d.admin else None, d.admin_source)

    def _is(self, mac: bytes | None, want: bytes | None) -> bool:
        return mac is not None and want is not None and hmac.compare_digest(mac, want)

    def check(self, presented: str | None, access: Access) -> None:
        """Return if the request may pass; raise the 401/403 ApiError it deserves."""
        if access is Access.PUBLIC:
            return
        mac = _mac(self.salt, presented) if presented else None
        if access is Access.ADMIN:
            if self.admin is None:
                raise ApiError(403, "permission_error", "admin endpoints are disabled: set "
                               f"{self.admin_source} on the server to enable them", None,
                               "admin_disabled")
            if self._is(mac, self.admin):
                return
            if self._is(mac, self.client):
                raise ApiError(403, "permission_error", "this endpoint needs the admin token",
                               None, "admin_required")
        elif self.client is None or self._is(mac, self.client) or self._is(mac, self.admin):
            return
        if presented is None:
            msg = "missing bearer token: send 'Authorization: Bearer <token>'"
        elif presented == "":
            msg = "malformed Authorization header: expected 'Bearer <token>'"
        else:
            msg = "invalid bearer token"
        raise ApiError(401, "authentication_error", msg, None, "invalid_api_key",
                       dict(_CHALLENGE))
