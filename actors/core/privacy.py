"""Prompt and answer text at rest: kept, replaced by a keyed hash, or dropped.

`tracker.store_text` decides (`full`, `hash`, `none`) and this module is the one place that
applies it — to the router's journal and to the audit trail alike. `hash` uses HMAC-SHA256,
not a bare sha256: a bare digest of a short or guessable prompt ("SPY: long or short?") can
be reversed by hashing guesses. The key comes from $LLM_ROUTER_HMAC_KEY when set (give every
node of a cluster the same one), else from `hmac.key` in the instance's state directory,
created 0600 on first use. With the key, an operator can still check whether a given text
was sent: `TextPolicy(...).digest(text)` equals the stored value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

from actors.stores.state import FILE_MODE, private_dir

StoreText = Literal["full", "hash", "none"]
ENV_HMAC_KEY = "LLM_ROUTER_HMAC_KEY"
KEY_FILE = "hmac.key"
#: Stored digests carry their kind, so a reader (and this module) can tell them from text.
PREFIX = "hmac-sha256:"


def load_key(state_dir: str | os.PathLike[str]) -> bytes:
    """The HMAC key: $LLM_ROUTER_HMAC_KEY, else `<state_dir>/hmac.key` (made if missing).

    A new key is written to a private temporary file and published with a hard link, so
    the router and the tracker starting together never read a half-written key."""
    env = os.environ.get(ENV_HMAC_KEY)
    if env:
        return env.encode()
    path = private_dir(state_dir) / KEY_FILE
    if not path.exists():
        tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process published one first: use theirs
        finally:
            tmp.unlink()
    key = Path(path).read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty; delete it to make a new HMAC key (hashes "
                           "stored so far then no longer match new ones)")
    return key.encode()


class TextPolicy:
    """Applies one `store_text` mode to texts on their way to disk."""

    def __init__(self, mode: StoreText, key: bytes | None = None) -> None:
        if mode not in ("full", "hash", "none"):
            raise ValueError(f"store_text must be full, hash or none, not {mode!r}")
        if mode == "hash" and not key:
            raise ValueError("store_text 'hash' needs an HMAC key")
        self.mode = mode
        self._key = key or b""

    @classmethod
    def for_dir(cls, mode: StoreText, state_dir: str | os.PathLike[str]) -> TextPolicy:
        """The policy with the key of this state directory (read only when hashing)."""
        return cls(mode, load_key(state_dir) if mode == "hash" else None)

    def digest(self, text: str) -> str:
        return PREFIX + hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def apply(self, text: str | None) -> str | None:
        """What may be written for `text`. Idempotent: a digest stays the same digest."""
        if text is None or self.mode == "full":
            return text
        if self.mode == "none":
            return None
        return text if text.startswith(PREFIX) else self.digest(text)
