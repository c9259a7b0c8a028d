"""One simulated attempt from request bytes to reply bytes, independent of the HTTP server.

Order of checks mirrors a real API: auth, request validation, outage, account limits,
then the profile's injected faults, then latency and the answer (whole, or as stream frames
the server paces).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.simulator import sse, turns, wire
from actors.simulator.asks import Ask
from actors.simulator.profiles import Profile, ProfileBook
from actors.simulator.quota import Quota
from actors.simulator.stats import UNKNOWN_MODEL, StatsBook

JSON_HEADERS: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
SSE_HEADERS: list[tuple[bytes, bytes]] = [(b"content-type", b"text/event-stream"),
                                          (b"cache-control", b"no-cache")]


@dataclass(slots=True)
class Reply:
    """What to send back. ``hang_s`` > 0 means: wait that long (or until the client leaves).

    A stream has ``frames`` (sent ``gap_s`` apart, the first at once); ``cut`` drops the
    connection after the frames, or after half of ``body``.
    """

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: JSON_HEADERS)
    hang_s: float = 0.0
    frames: list[bytes] | None = None
    gap_s: float = 0.0
    cut: bool = False
    model: str = ""


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
        self.cache = turns.PromptCache()
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
        stream: bool = False,
        batch: bool = False,
    ) -> Reply:
        """Serve one API request (`stream`: Gemini's streaming endpoint was called; `batch`:
        an item of a batch job — no rate limit and no latency, the job has its own delay)."""
        stats = self.stats
        if not wire.authorized(api, headers, query):
            stats.add(path_model or UNKNOWN_MODEL, "unauthorized")
            return self._error(api, 401, "Missing or invalid API key (simulator).")
        try:
            ask = wire.parse(api, body, path_model)
        except wire.WireError as exc:
            stats.add(path_model or UNKNOWN_MODEL, "bad_request")
            return self._error(api, 400, f"Invalid request: {exc}")
        ask.stream = ask.stream or stream
        model = ask.model
        refusal = _refused(api, ask)
        if refusal:
            stats.add(model, "bad_request")
            return self._error(api, 400, refusal)
        profile = self.profiles.get(model)
        if profile.down:
            stats.add(model, "down")
            return self._error(api, 503, f"{model} is temporarily unavailable (simulated outage).")

        rng = self.rng
        cached = self.cache.lookup(model, ask, api, profile.cache_min_tokens, time.monotonic())
        turn = turns.turn(api, ask, profile, rng, cached)
        if not batch and (profile.rpm is not None or profile.tpm is not None):
            quota = self._quotas.get(model)
            if quota is None:
                quota = self._quotas[model] = Quota()
            wait = quota.admit(time.monotonic(), turn.in_tok + turn.out_tok, profile.rpm,
                               profile.tpm)
            if wait is not None:
                stats.add(model, "rate_limited_by_limit")
                limits = f"rpm={profile.rpm}, tpm={profile.tpm}"
                return self._error(api, 429, f"Rate limit reached for {model} ({limits}).", wait)

        fault = profile.pick_fault(rng.random()) if profile.faulty else None
        if fault == "rate_limit":
            stats.add(model, fault)
            return self._error(api, 429, "Rate limit exceeded (simulated).", profile.retry_after_s)
        if fault == "overloaded" or (fault == "stream_error" and not ask.stream):
            stats.add(model, fault)
            return self._error(api, 529 if api == "anthropic" else 503, "Overloaded (simulated).")
        if fault == "timeout":
            stats.add(model, fault)
            reply = self._error(api, 504, "Upstream request timed out (simulated).")
            reply.hang_s = profile.hang_s
            return reply

        first_s, decode_s = self._latency(profile, turn.out_tok)
        delay = first_s + (0.0 if ask.stream else decode_s)
        if delay > 0 and not batch:  # a zero sleep still costs a trip round the event loop
            await asyncio.sleep(delay)

        if fault == "server_error":
            stats.add(model, fault)
            return self._error(api, 500, "Internal server error (simulated).")
        if fault == "invalid_output":
            turns.prose_instead(turn, ask)
        stats.add(model, fault or "ok")
        stats.bill(model, turn.in_tok, turn.out_tok)  # every 200 answer is charged
        if ask.stream:
            return self._stream(api, ask, profile, turn, fault, decode_s)
        obj = wire.ok_body(api, model, turn, self._rid())
        if fault == "malformed":
            return Reply(200, _malform(api, obj, profile.malformed_kind, rng))
        return Reply(200, wire.dumps(obj), cut=fault == "cut")

    def _latency(self, profile: Profile, out_tok: int) -> tuple[float, float]:
        """(time to first token, decode time) in seconds, scaled."""
        scale = self.latency_scale
        if scale <= 0:
            return 0.0, 0.0
        ms = profile.base_ms
        if profile.jitter:
            ms *= self.rng.lognormvariate(0.0, profile.jitter)
        return ms * scale / 1000.0, profile.ms_per_token * out_tok * scale / 1000.0

    def _stream(self, api: wire.Api, ask: Ask, profile: Profile, turn: turns.Turn,
                fault: str | None, decode_s: float) -> Reply:
        kind = profile.malformed_kind
        if fault == "malformed" and kind == "random":
            kind = self.rng.choice(_MALFORMED_KINDS)
        rid = self._rid()
        frames = sse.stream_frames(api, ask.model, turn, rid, chunks=profile.stream_chunks,
                                   include_usage=ask.include_usage,
                                   usage=not (fault == "malformed" and kind == "no_usage"),
                                   usage_always=profile.stream_usage_always)
        half = max(1, len(frames) // 2)
        if fault == "malformed" and kind != "no_usage":
            frames = frames[:half] + [sse.malformed_frame()] + frames[half:]
        elif fault == "stream_error":
            frames = frames[:half] + [sse.error_frame(api, 529 if api == "anthropic" else 503,
                                                      "Overloaded (simulated).", rid)]
        elif fault == "cut":
            frames = frames[:half]
        gap = profile.stream_interval_ms
        gap_s = (gap * self.latency_scale / 1000.0 if gap is not None
                 else decode_s / max(len(frames) - 1, 1))
        return Reply(200, b"", SSE_HEADERS, frames=frames, gap_s=gap_s, cut=fault == "cut",
                     model=ask.model)


def _refused(api: wire.Api, ask: Ask) -> str | None:
    """What Gemini 2.5 refuses with a 400, as the real API does."""
    if api != "gemini" or "gemini-2.5" not in ask.model:
        return None
    if ask.penalties:
        return f"Penalty is not enabled for models/{ask.model}"
    if ask.logprobs is not None:
        return f"Logprobs is not enabled for models/{ask.model}"
    if ask.thinking == 0 and "2.5-pro" in ask.model:
        return "Budget 0 is invalid. This model only works in thinking mode."
    return None


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
