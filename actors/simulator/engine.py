"""One simulated attempt from request bytes to reply bytes, independent of the HTTP server.

Order of checks mirrors a real API: auth, request validation, outage, account limits,
then the profile's injected faults, then latency and the answer.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.simulator import answers, wire
from actors.simulator.profiles import ProfileBook
from actors.simulator.quota import Quota
from actors.simulator.stats import UNKNOWN_MODEL, StatsBook

JSON_HEADERS: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Reply:
    """What to send back. ``hang_s`` > 0 means: wait that long (or until the client leaves)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: JSON_HEADERS)
    hang_s: float = 0.0


class Simulator:
    """State of the simulated providers: profiles, limits, counters and the seeded RNG."""

    def __init__(
        self,
        latency_scale: float = 1.0,
        seed: int | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.latency_scale = latency_scale
        self.rng = random.Random(seed)
        self.profiles = ProfileBook(overrides)
        self.stats = StatsBook()
        self._quotas: dict[str, Quota] = {}

    def _rid(self) -> str:
        return f"{self.rng.getrandbits(96):024x}"

    def _error(
        self, api: wire.Api, status: int, message: str, retry_after: float | None = None
    ) -> Reply:
        body = wire.dumps(wire.error_body(api, status, message, self._rid()))
        if retry_after is None:
            return Reply(status, body)
        headers = JSON_HEADERS + [
            (b"retry-after", str(math.ceil(retry_after)).encode()),
            (b"retry-after-ms", str(math.ceil(retry_after * 1000)).encode()),
        ]
        return Reply(status, body, headers)

    async def handle(
        self,
        api: wire.Api,
        headers: Mapping[str, str],
        body: bytes,
        query: str = "",
        path_model: str | None = None,
    ) -> Reply:
        """Serve one API request."""
        stats = self.stats
        if not wire.authorized(api, headers, query):
            stats.add(path_model or UNKNOWN_MODEL, "unauthorized")
            return self._error(api, 401, "Missing or invalid API key (simulator).")
        try:
            ask = wire.parse(api, body, path_model)
        except wire.WireError as exc:
            stats.add(path_model or UNKNOWN_MODEL, "bad_request")
            return self._error(api, 400, f"Invalid request: {exc}")
        model = ask.model
        profile = self.profiles.get(model)
        if profile.down:
            stats.add(model, "down")
            return self._error(api, 503, f"{model} is temporarily unavailable (simulated outage).")

        rng = self.rng
        in_tok = answers.count_tokens(ask.prompt)
        text, out_tok, truncated = answers.truncate(
            answers.answer(ask.prompt, profile, rng), ask.max_tokens
        )
        if profile.rpm is not None or profile.tpm is not None:
            quota = self._quotas.get(model)
            if quota is None:
                quota = self._quotas[model] = Quota()
            wait = quota.admit(time.monotonic(), in_tok + out_tok, profile.rpm, profile.tpm)
            if wait is not None:
                stats.add(model, "rate_limited_by_limit")
                limits = f"rpm={profile.rpm}, tpm={profile.tpm}"
                return self._error(api, 429, f"Rate limit reached for {model} ({limits}).", wait)

        fault = profile.pick_fault(rng.random()) if profile.faulty else None
        if fault == "rate_limit":
            stats.add(model, fault)
            return self._error(api, 429, "Rate limit exceeded (simulated).", profile.retry_after_s)
        if fault == "overloaded":
            stats.add(model, fault)
            return self._error(api, 529 if api == "anthropic" else 503, "Overloaded (simulated).")
        if fault == "timeout":
            stats.add(model, fault)
            reply = self._error(api, 504, "Upstream request timed out (simulated).")
            reply.hang_s = profile.hang_s
            return reply

        scale = self.latency_scale
        if scale > 0:
            ms = profile.base_ms
            if profile.jitter:
                ms *= rng.lognormvariate(0.0, profile.jitter)
            delay = (ms + profile.ms_per_token * out_tok) * scale / 1000.0
            if delay > 0:
                await asyncio.sleep(delay)

        if fault == "server_error":
            stats.add(model, fault)
            return self._error(api, 500, "Internal server error (simulated).")
        if fault == "invalid_output":
            text, out_tok, truncated = answers.truncate(answers.prose(), ask.max_tokens)
        obj = wire.ok_body(api, model, text, in_tok, out_tok, truncated, self._rid())
        if fault == "malformed":
            stats.add(model, fault)
            stats.bill(model, in_tok, out_tok)
            return Reply(200, _malform(api, obj, profile.malformed_kind, rng))
        stats.add(model, fault or "ok")
        stats.bill(model, in_tok, out_tok)
        return Reply(200, wire.dumps(obj))


_MALFORMED_KINDS = ("not_json", "truncated", "no_usage")


def _malform(api: wire.Api, obj: dict[str, Any], kind: str, rng: random.Random) -> bytes:
    """A 200 body a client cannot use: not JSON, cut short, or without usage."""
    if kind == "random":
        kind = rng.choice(_MALFORMED_KINDS)
    if kind == "not_json":
        return b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    full = wire.dumps(obj)
    if kind == "truncated":
        return full[: len(full) // 2]
    obj.pop(wire.USAGE_KEY[api], None)
    return wire.dumps(obj)
