"""What one request asks the simulator for, whatever its wire format (parsed in
actors/simulator/asks.py and gemini_asks.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["anthropic", "openai", "gemini"]


class WireError(ValueError):
    """The request body is not what this API accepts (becomes a 400)."""


@dataclass(slots=True)
class ToolDef:
    name: str
    schema: dict[str, Any] | None


@dataclass(slots=True)
class Ask:
    """One parsed request: what the simulator needs whatever the wire format."""

    model: str
    prompt: str
    max_tokens: int | None
    stream: bool = False
    include_usage: bool = False
    stop: list[str] | None = None
    n: int = 1
    seed: int | None = None
    tools: list[ToolDef] = field(default_factory=list)
    tool_mode: Literal["auto", "none", "required"] = "auto"
    tool_name: str | None = None
    parallel: bool = True
    after_tool: bool = False
    called: set[str] = field(default_factory=set)
    json_mode: bool = False
    schema: dict[str, Any] | None = None
    thinking: int | None = None
    logprobs: int | None = None
    penalties: bool = False
    cache_prefix: str = ""
    cache_marked: bool = False


def set_choice(ask: Ask, choice: str | None) -> None:
    """auto / none / required (any) / a tool's name."""
    if choice in (None, "auto"):
        return
    if choice == "none":
        ask.tool_mode = "none"
    elif choice in ("required", "any"):
        ask.tool_mode = "required"
    else:
        if choice not in {t.name for t in ask.tools}:
            raise WireError(f"tool_choice: no tool named {choice!r}")
        ask.tool_mode, ask.tool_name = "required", choice
    if ask.tool_mode != "none" and not ask.tools:
        raise WireError("tool_choice: needs tools")
