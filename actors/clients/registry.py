"""`make_client`: the wire client for a provider spec, real or simulated."""

from __future__ import annotations

import httpx

from actors.clients.anthropic import AnthropicClient
from actors.clients.gemini import GeminiClient
from actors.clients.openai import OpenAIClient
from actors.clients.wire import WireClient
from actors.config import ProviderSpec

CLIENTS: dict[str, type[WireClient]] = {
    c.api: c for c in (AnthropicClient, OpenAIClient, GeminiClient)
}
#: Sent to the simulator when no key is given; it checks that a key is present, not its value.
SIM_KEY = "sim"


def make_client(
    spec: ProviderSpec,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WireClient:
    """The client for `spec.api`.

    `base_url` substitutes another server (the simulator). A substituted server gets the
    placeholder key unless `api_key` is passed: the real key from the environment is only ever
    sent to the configured host. `transport` replaces the HTTP transport (tests).
    """
    cls = CLIENTS.get(spec.api)
    if cls is None:
        raise ValueError(
            f"provider {spec.name!r}: unknown api {spec.api!r}; expected one of {sorted(CLIENTS)}"
        )
    if api_key is None:
        api_key = SIM_KEY if base_url is not None else spec.api_key
    return cls(spec, api_key=api_key, base_url=base_url, transport=transport)
