"""Cheap token estimates, used to refuse prompts that cannot fit before paying for an attempt.

Roughly four characters a token for English and JSON across the vendors' tokenizers; the
estimate only has to be good enough to catch prompts that are clearly too long, not to bill.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.clients.base import Message

CHARS_PER_TOKEN = 4
#: Role markers and separators each chat format wraps around one message.
MESSAGE_OVERHEAD = 4
#: Tokens the formats add once per request (assistant priming and the like).
REQUEST_OVERHEAD = 3


def estimate_tokens(text: str) -> int:
    """≈ ceil(chars / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_messages(messages: Iterable[Message]) -> int:
    """Estimated prompt tokens of a conversation, including per-message overhead."""
    return REQUEST_OVERHEAD + sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)
