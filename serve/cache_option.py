"""The response cache over HTTP: the `x-router-cache` request header (the native bodies also
take a `cache` field), and the same header on a cached answer.

Live traffic does not use the cache unless a request asks (actors/stores/response_cache.py); the
body's field wins over the header when it chooses a mode other than `off`.
"""

from __future__ import annotations

from typing import get_args

from actors.routing.route import RouteRequest
from actors.stores.response_cache import CacheMode
from serve.errors import bad_request

CACHE_HEADER = "x-router-cache"
MODES = get_args(CacheMode)


def apply(req: RouteRequest, header: str | None) -> RouteRequest:
    """`req` with the header's cache mode when its body left the cache off."""
    if header is None or req.cache != "off":
        return req
    mode = header.strip().lower()
    if mode not in MODES:
        raise bad_request(f"{CACHE_HEADER}: {header!r} is not one of {', '.join(MODES)}",
                          CACHE_HEADER)
    return req.model_copy(update={"cache": mode})
