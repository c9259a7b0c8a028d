"""The one long-lived HTTP client per provider.

httpx's own transport (httpcore) falls over under concurrency on a small machine: measured
here 634 req/s at 1 in flight but 164 req/s with a p99 of 1.1 s at 32 in flight. The
`httpx-aiohttp` transport keeps httpx's API and puts aiohttp's connection pool underneath,
which holds its rate at 32 in flight (see `scripts/bench_clients.py`).
"""

from __future__ import annotations

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from actors.config import ProviderSpec

#: Idle connections are kept this long; providers' load balancers close after ~60-120 s.
KEEPALIVE_S = 30.0
#: Connecting should never take long; a dead host should fail well before timeout_s.
CONNECT_TIMEOUT_S = 10.0


def limits_for(spec: ProviderSpec) -> httpx.Limits:
    """Room for every attempt the limiter lets through, plus connections still closing."""
    return httpx.Limits(
        max_connections=2 * spec.max_concurrency,
        max_keepalive_connections=spec.max_concurrency,
        keepalive_expiry=KEEPALIVE_S,
    )


def timeout_for(spec: ProviderSpec) -> httpx.Timeout:
    """Per-phase timeouts; the caller also bounds the whole attempt by `spec.timeout_s`."""
    return httpx.Timeout(spec.timeout_s, connect=min(CONNECT_TIMEOUT_S, spec.timeout_s))


def make_http_client(
    spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The provider's `httpx.AsyncClient` on aiohttp's pool; pass `transport` to substitute one.

    `HttpxAiohttpClient` rather than `AsyncClient(transport=...)` so that proxies taken from
    the environment also run on aiohttp instead of silently falling back to httpcore. No
    redirects: an API that redirects is misconfigured. The aiohttp session opens on first use,
    inside the event loop that will use it.
    """
    return HttpxAiohttpClient(
        transport=transport,
        timeout=timeout_for(spec),
        limits=limits_for(spec),
        follow_redirects=False,
    )
