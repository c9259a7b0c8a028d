"""Cheap token estimates, used to refuse prompts that cannot fit before paying for an attempt,
and to estimate what a stream cut before its usage event was billed.

Roughly four characters a token for English and JSON across the vendors' tokenizers; the
estimate only has to be good enough to catch prompts that are clearly too long, and to put
a marked estimate on an attempt whose real usage never arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.clients.base import Message, Tool

CHARS_PER_TOKEN = 4
#: Role markers and separators each chat format wraps around one message.
MESSAGE_OVERHEAD = 4
#: Tokens the formats add once per request (assistant priming and the like).
REQUEST_OVERHEAD = 3


def estimate_tokens(text: str) -> int:
    """≈ ceil(chars / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def _message_tokens(m: Message) -> int:
    n = estimate_tokens(m.content or "") + MESSAGE_OVERHEAD
    for call in m.tool_calls or ():
        n += estimate_tokens(call.function.name) + estimate_tokens(call.function.arguments)
    return n


def estimate_messages(messages: Iterable[Message]) -> int:
    """Estimated prompt tokens of a conversation, including per-message overhead."""
    return REQUEST_OVERHEAD + sum(_message_tokens(m) for m in messages)


def estimate_tools(tools: Iterable[Tool] | None) -> int:
    """Tool definitions count as prompt tokens too (their JSON, roughly)."""
    if not tools:
        return 0
    return sum(estimate_tokens(json.dumps(t.function.model_dump(exclude_none=True)))
               for t in tools)
