"""What a simulated model answers to one request, before any wire format: text or tool calls,
n choices, stop sequences, JSON for a schema, thinking within max_tokens, cached prompt tokens.

A plain request (one choice, no tools, no format) draws from the simulator's generator
exactly as before, so seeded runs reproduce; a request with `seed` answers from a generator
of its own, so the same seed and prompt give the same answer.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from actors.simulator import answers, schemas
from actors.simulator.asks import Ask
from actors.simulator.profiles import Profile

_TICKER = re.compile(r"\b[A-Z]{2,5}\b")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
#: Chars a simulated token covers (answers.count_tokens' rule of thumb).
TOKEN_CHARS = 4


@dataclass(slots=True)
class Call:
    id: str
    name: str
    args: dict[str, Any]

    @property
    def arguments(self) -> str:
        return json.dumps(self.args)


@dataclass(slots=True)
class Out:
    """One choice."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    finish: str = "stop"  # stop | length | tool_calls
    stop_sequence: str | None = None
    tokens: int = 0
    thinking: int = 0
    logprobs: list[tuple[str, float, list[tuple[str, float]]]] | None = None


@dataclass(slots=True)
class Turn:
    choices: list[Out]
    in_tok: int
    cached: int = 0
    cache_write: int = 0

    @property
    def out_tok(self) -> int:
        """Billed output: every choice's visible tokens and thinking."""
        return sum(c.tokens + c.thinking for c in self.choices)

    @property
    def thinking(self) -> int:
        return sum(c.thinking for c in self.choices)


def _seeded(ask: Ask, rng: random.Random) -> random.Random:
    if ask.seed is None:
        return rng
    return random.Random(ask.seed ^ zlib.crc32(ask.prompt.encode()))


def thinking_tokens(api: str, ask: Ask, profile: Profile) -> int:
    """Gemini 2.5 thinks unless its budget is 0; Claude only when thinking is enabled."""
    natural = profile.thinking_tokens
    if api == "gemini":
        if ask.thinking == 0 or not natural:
            return 0
        return natural if ask.thinking in (None, -1) else min(ask.thinking, natural)
    if api == "anthropic" and ask.thinking:
        return min(ask.thinking, natural or ask.thinking // 2)
    return 0


def _cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, str | None]:
    if not stop:
        return text, None
    hits = [(i, s) for s in stop if (i := text.find(s)) >= 0]
    if not hits:
        return text, None
    i, s = min(hits)
    return text[:i], s


def _calls(api: str, ask: Ask, profile: Profile, rng: random.Random,
           id_prefix: str) -> list[Call]:
    """The tools this turn calls: the forced one; else those the prompt names (one unless
    parallel calls are allowed), preferring tools not called yet in the conversation; else
    the first such tool. Arguments fit the tool's schema, leaning on the prompt's ticker and
    the model's natural answer where property names match."""
    tools = {t.name: t for t in ask.tools}
    if ask.tool_name is not None:
        names = [ask.tool_name]
    else:
        fresh = [t.name for t in ask.tools if t.name not in ask.called] or list(tools)
        named = [n for n in fresh if n in ask.prompt]
        names = (named if ask.parallel else named[:1]) or fresh[:1]
    hint: dict[str, Any] = {}
    try:
        hint = json.loads(_FENCE.sub("", answers.answer(ask.prompt, profile, rng)))
    except ValueError:
        pass
    ticker = _TICKER.search(ask.prompt)
    if ticker:
        hint |= {"symbol": ticker.group(0), "ticker": ticker.group(0)}
    out = []
    for name in names:
        schema = tools[name].schema or {"type": "object", "properties": {}}
        args = schemas.instance(schema, rng, hint)
        ident = f"{id_prefix}{rng.getrandbits(96):024x}" if api != "gemini" else ""
        out.append(Call(ident, name, args if isinstance(args, dict) else {}))
    return out


def _logprobs(text: str, k: int, rng: random.Random) -> list[tuple[str, float, list[tuple[str, float]]]]:
    out = []
    for i in range(0, len(text), TOKEN_CHARS):
        token = text[i:i + TOKEN_CHARS]
        lp = -round(abs(rng.gauss(0.05, 0.3)), 4)
        alts = [(token, lp)] + [(f"{token[:1]}{j}", round(lp - 1.5 - j, 4)) for j in range(k - 1)]
        out.append((token, lp, alts[:k]))
    return out


def _text(ask: Ask, profile: Profile, rng: random.Random) -> str:
    natural = answers.answer(ask.prompt, profile, rng)
    if not ask.json_mode:
        return natural
    bare = _FENCE.sub("", natural)  # JSON mode never fences
    if ask.schema is None:
        return bare
    try:
        hint = json.loads(bare)
    except ValueError:
        hint = None
    return json.dumps(schemas.instance(ask.schema, rng, hint))


def _choice(api: str, ask: Ask, profile: Profile, rng: random.Random, id_prefix: str) -> Out:
    cap = ask.max_tokens
    thinking = thinking_tokens(api, ask, profile)
    if cap is not None and thinking >= cap:
        return Out(finish="length", thinking=cap)  # spent the whole cap thinking
    visible_cap = None if cap is None else cap - thinking
    calls_now = ask.tools and ask.tool_mode != "none" and (
        ask.tool_mode == "required" or not ask.after_tool)
    if calls_now:
        calls = _calls(api, ask, profile, rng, id_prefix)
        tokens = sum(answers.count_tokens(c.name + c.arguments) for c in calls)
        if visible_cap is None or tokens <= visible_cap:
            return Out(calls=calls, finish="tool_calls", tokens=tokens, thinking=thinking)
        return Out(finish="length", tokens=visible_cap, thinking=thinking)
    text, hit = _cut_at_stop(_text(ask, profile, rng), ask.stop)
    text, tokens, truncated = answers.truncate(text, visible_cap)
    out = Out(text=text, tokens=tokens, thinking=thinking, stop_sequence=None if truncated else hit,
              finish="length" if truncated else "stop")
    if ask.logprobs is not None:
        out.logprobs = _logprobs(text, ask.logprobs, rng)
    return out


class PromptCache:
    """Prefixes (system prompts) a model has seen lately: a repeat within the TTL is a cache
    read. OpenAI and Gemini cache on their own; Claude only what the request marks."""

    TTL_S = 300.0
    MAX = 4096

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], float] = {}

    def lookup(self, model: str, ask: Ask, api: str, min_tokens: int | None,
               now: float) -> tuple[int, int]:
        """(cache-read tokens, cache-write tokens) for this request."""
        if min_tokens is None or not ask.cache_prefix or (api == "anthropic" and
                                                           not ask.cache_marked):
            return 0, 0
        tokens = answers.count_tokens(ask.cache_prefix)
        if tokens < min_tokens:
            return 0, 0
        key = (model, zlib.crc32(ask.cache_prefix.encode()))
        hit = self._seen.get(key, 0.0) > now
        if len(self._seen) >= self.MAX:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
            if len(self._seen) >= self.MAX:
                self._seen.clear()
        self._seen[key] = now + self.TTL_S
        if hit:
            return tokens, 0
        return 0, tokens if api == "anthropic" else 0


def turn(api: str, ask: Ask, profile: Profile, rng: random.Random,
         cached: tuple[int, int] = (0, 0)) -> Turn:
    """Every choice of the answer (Anthropic has no n)."""
    gen = _seeded(ask, rng)
    prefix = "toolu_" if api == "anthropic" else "call_"
    n = 1 if api == "anthropic" else ask.n
    choices = [_choice(api, ask, profile, gen, prefix) for _ in range(n)]
    return Turn(choices, answers.count_tokens(ask.prompt), *cached)


def prose_instead(t: Turn, ask: Ask) -> None:
    """The invalid_output fault: every choice says prose, no JSON, no tool call."""
    for c in t.choices:
        cap = None if ask.max_tokens is None else max(ask.max_tokens - c.thinking, 0)
        c.text, c.tokens, truncated = answers.truncate(answers.prose(), cap)
        c.calls, c.stop_sequence, c.logprobs = [], None, None
        c.finish = "length" if truncated else "stop"
