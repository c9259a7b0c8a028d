"""The one long-lived HTTP transport per provider, and the per-attempt timeouts it gets.

httpx's own transport (httpcore) falls over under concurrency on a small machine: measured
here 634 req/s at 1 in flight but 164 req/s with a p99 of 1.1 s at 32 in flight. The
`httpx-aiohttp` transport keeps httpx's types (Request, Response, exceptions, MockTransport
in tests) and puts aiohttp's connection pool underneath.

The wire clients hand each `httpx.Request` straight to this transport instead of going
through `httpx.AsyncClient`: the client's per-request machinery (URL merging, cookie jar,
auth and redirect loops) costs ~100 µs of CPU an attempt here, none of which an API call
needs. See `scripts/bench_clients.py` for the figures.
"""

from __future__ import annotations

import functools
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from actors.config import ProviderSpec

#: Idle connections are kept this long; providers' load balancers close after ~60-120 s.
KEEPALIVE_S = 30.0
#: Connecting should never take long; a dead host should fail well before timeout_s.
CONNECT_TIMEOUT_S = 10.0

#: Called when the current attempt's body has been handed to the socket. Set per attempt by
#: `WireClient.send`; aiohttp writes the body in a task of its own, which sees the value.
ON_SENT: ContextVar[Callable[[], None] | None] = ContextVar("on_sent", default=None)


def limits_for(spec: ProviderSpec) -> httpx.Limits:
    """Room for every attempt the limiter lets through, plus connections still closing."""
    return httpx.Limits(
        max_connections=2 * spec.max_concurrency,
        max_keepalive_connections=spec.max_concurrency,
        keepalive_expiry=KEEPALIVE_S,
    )


def timeout_for(spec: ProviderSpec) -> httpx.Timeout:
    """Per-phase timeouts; the wire client also bounds the whole attempt by `spec.timeout_s`."""
    return httpx.Timeout(spec.timeout_s, connect=min(CONNECT_TIMEOUT_S, spec.timeout_s))


def request_extensions(spec: ProviderSpec) -> dict[str, Any]:
    """What `httpx.AsyncClient` would attach to each request; the transport reads timeouts here."""
    return {"timeout": timeout_for(spec).as_dict()}


@functools.lru_cache(maxsize=64)
def parsed_url(url: str) -> httpx.URL:
    """Each provider posts to one or two URLs; parsing them every attempt costs ~25 µs."""
    return httpx.URL(url)


def env_proxy(url: str) -> httpx.Proxy | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for `url`, as `httpx.AsyncClient` would use.

    Looked up once per transport: aiohttp's `trust_env` would read the environment on every
    request (~60 µs each here).
    """
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    return httpx.Proxy(proxy) if proxy else None


class _Request(aiohttp.ClientRequest):
    """Calls `ON_SENT` once the body is in the socket's hands.

    aiohttp's tracing (`on_request_chunk_sent`) tells the same moment but cost ~30 µs of
    client CPU an attempt in scripts/bench_clients.py's harness; this override is within its
    noise. `write_bytes` is aiohttp's, not a public hook: tests/test_provider.py's stall test
    fails if a release stops calling it.
    """

    async def write_bytes(self, *args: Any, **kwargs: Any) -> None:
        await super().write_bytes(*args, **kwargs)
        on_sent = ON_SENT.get()
        if on_sent is not None:
            on_sent()


class Transport(AiohttpTransport):
    """httpx-aiohttp's transport, its session also reporting when a body went out (`ON_SENT`):
    a provider counts a request when it arrives, and between the limiter's grant and the
    write there may be a new connection to make, or an event loop busy elsewhere."""

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(keepalive_timeout=self.limits.keepalive_expiry,
                                         ssl=self.ssl_context, limit=self.limits.max_connections)
        return aiohttp.ClientSession(connector=connector, request_class=_Request)


def make_transport(spec: ProviderSpec) -> AiohttpTransport:
    """aiohttp's pool behind httpx's transport interface, for `spec.base_url`.

    The aiohttp session opens on first use, inside the event loop that uses it; it verifies
    TLS with httpx's context (certifi roots, SSL_CERT_FILE honoured).
    """
    return Transport(limits=limits_for(spec), proxy=env_proxy(spec.base_url))
