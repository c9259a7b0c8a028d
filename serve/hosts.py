"""The `Host` header allow-list: the defence against DNS rebinding.

A web page can make a browser resolve its own name to 127.0.0.1 and then talk to a loopback
server as a same-origin site; the request still carries the page's name in `Host`. Only names
the operator listed (`serve.allowed_hosts`, loopback names by default) are answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def host_name(header: str) -> str:
    """The name in a Host header, without port, brackets or a trailing dot, lower-cased."""
    h = header.strip().lower()
    if h.startswith("["):  # [::1]:8000
        return h[1:h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        h = h.rsplit(":", 1)[0]
    return h.rstrip(".")


#: Allowed Host header values remembered as they arrive (a name times its ports: few).
_REMEMBERED = 64


@dataclass(frozen=True)
class HostAllowList:
    """Exact names, `*.domain` for its subdomains, or `*` for any."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]
    any: bool
    _seen: set[bytes] = field(default_factory=set, compare=False, repr=False)

    @classmethod
    def of(cls, patterns: Iterable[str]) -> HostAllowList:
        exact: set[str] = set()
        suffixes: list[str] = []
        anyhost = False
        for p in patterns:
            p = p.strip().lower().strip("[]").rstrip(".")
            if p == "*":
                anyhost = True
            elif p.startswith("*."):
                suffixes.append(p[1:])
            else:
                exact.add(p)
        return cls(frozenset(exact), tuple(suffixes), anyhost)

    def allows(self, header: bytes | None) -> bool:
        if self.any or header in self._seen:  # the hot path: the same Host every request
            return True
        if not header:
            return False
        name = host_name(header.decode("latin-1"))
        ok = name in self.exact or any(name.endswith(s) for s in self.suffixes)
        if ok and len(self._seen) < _REMEMBERED:  # only allowed values: a bounded set
            self._seen.add(header)
        return ok
