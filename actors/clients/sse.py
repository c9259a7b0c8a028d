"""Server-sent events decoded from byte chunks as they arrive.

All three vendors stream SSE (`event:` / `data:` lines, a blank line ends an event); the
chunk boundaries the network gives are arbitrary, so a line may arrive in pieces.
"""

from __future__ import annotations

Event = tuple[str, str]
"""(event name, data); the name is "" when the server sent none (OpenAI, Gemini)."""


class SSEDecoder:
    """Feed bytes, get complete events. Comments (`: ping`) and `id:`/`retry:` are skipped."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event = ""
        self._data: list[str] | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        lines = (self._buf + chunk).split(b"\n")
        self._buf = lines.pop()
        out: list[Event] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self._data is not None:
                    out.append((self._event, "\n".join(self._data)))
                self._event, self._data = "", None
                continue
            if line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                text = value.decode("utf-8", "replace")
                if self._data is None:
                    self._data = [text]
                else:
                    self._data.append(text)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        return out

    def flush(self) -> list[Event]:
        """At the end of the body: an event the server did not end with a blank line."""
        out = self.feed(b"\n\n") if self._buf else []
        if self._data is not None:
            out.append((self._event, "\n".join(self._data)))
            self._event, self._data = "", None
        return out
