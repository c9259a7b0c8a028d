"""Request contexts: what a caller may send, and the one definition of a context key.

A request's `context` ({"task": "analysis", "regime": "bull", "symbol": "SPX", ...}) travels
with it into the trace and the audit trail. Only the configured keys (`tracker.context_keys`,
default task, regime, timeframe) make the key that learned estimates and aggregates are kept
under; other entries key nothing. The key is a tuple of (name, value) pairs in the configured
order — a typed value, never a string to be parsed back. Values are checked at the boundary
(length, no control characters) and the number of contexts any one holder tracks is bounded
by its owner (least recently used ones are folded away).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ContextKey = tuple[tuple[str, str], ...]
GLOBAL: ContextKey = ()  # the key of a provider's figures over every context
DEFAULT_KEYS: tuple[str, ...] = ("task", "regime", "timeframe")
MAX_ENTRIES = 32
MAX_NAME_CHARS = 64
MAX_VALUE_CHARS = 128


def _bad_char(text: str) -> str | None:
    for ch in text:
        if ch < " " or ch == "\x7f":
            return repr(ch)
    return None


def check_context(context: Mapping[Any, Any]) -> dict[str, str]:
    """The context as str → str, or ValueError naming the entry that is not acceptable.

    Values are stringified (numbers are fine); names and values must be short and free of
    control characters, because they end up in headers, logs and the audit trail."""
    if len(context) > MAX_ENTRIES:
        raise ValueError(f"context has {len(context)} entries; at most {MAX_ENTRIES} allowed")
    out: dict[str, str] = {}
    for k, v in context.items():
        name, value = str(k), str(v)
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"context key {name[:MAX_NAME_CHARS]!r}: must be 1-{MAX_NAME_CHARS} "
                             "characters")
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"context[{name!r}]: value is {len(value)} characters; at most "
                             f"{MAX_VALUE_CHARS} allowed")
        for what, text in (("key", name), ("value", value)):
            bad = _bad_char(text)
            if bad:
                raise ValueError(f"context[{name[:MAX_NAME_CHARS]!r}]: {what} contains the "
                                 f"control character {bad}")
        out[name] = value
    return out


def context_key(context: Mapping[str, Any] | None, keys: Iterable[str] = DEFAULT_KEYS) -> ContextKey:
    """The (name, value) pairs of the configured keys present and non-empty, in `keys` order."""
    if not context:
        return GLOBAL
    out = []
    for k in keys:
        v = context.get(k)
        if v is not None and v != "":
            out.append((k, str(v)))
    return tuple(out)


def configured_keys(config: Any) -> tuple[str, ...]:
    """The context keys a Config names (`tracker.context_keys`, validated at load), for router
    and tracker alike."""
    return tuple(config.tracker.context_keys)


def label(key: ContextKey) -> str:
    """For people (tables, logs): "task=analysis|regime=bull"; "*" for the global key.
    Display only — code passes the tuple itself."""
    return "|".join(f"{k}={v}" for k, v in key) if key else "*"
