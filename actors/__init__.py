"""llm-router: a multi-LLM router for trading analysis, built on Ray.

Public API: `connect()` returns a client with complete/acomplete/status/costs/performance/
feedback/reset/shutdown. Everything else is importable from its own module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.api import RouterClient


def connect(address: str | None = None, config: Any = None, **ray_init: Any) -> RouterClient:
    from actors.api import connect as _connect

    return _connect(address, config, **ray_init)


__all__ = ["connect"]
