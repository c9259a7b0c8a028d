"""Render a `MarketContext` into the system + user messages of one task, within a token budget.

Sections come from the task's template file (see `prompts.template`); which ones appear depends on
the context (regime, trading style, position, patterns). When the prompt would not fit
`max_input_tokens`, whole sections are dropped, least important first, and named in
`Prompt.dropped_sections` — text is never cut mid-sentence, since a half-sentence of risk guidance
reads as a different instruction. The token estimate is the router's rule: ceil(chars / 4) per
message, plus 4 per message and 3 per request.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from prompts.context import PATTERN_DIRECTION, MarketContext
from prompts.tasks import Task, get_task
from prompts.template import REQUIRED, TEMPLATE_DIR, load_template

# The router's estimate (actors/core/tokens.py), repeated so prompts need not import actors; a test
# checks the two agree.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3

#: Every `$placeholder` a template may use.
PLACEHOLDERS = frozenset(
    """task output_model schema symbol timeframe as_of regime regime_text style last_close
    rsi rsi_zone macd macd_signal macd_hist ema_fast ema_slow sma_trend close_vs_sma
    close_vs_ema_fast atr atr_pct atr_x2 bb_width_pct realized_vol_pct volume_change_pct
    patterns side entry stop size account_equity risk_amount risk_pct max_risk_pct risk_budget
    size_at_2atr""".split()
)
_NA = "n/a"


class PromptTooLong(ValueError):
    """Even the system prompt and the required sections exceed the token budget."""

    def __init__(self, task: str, needed: int, limit: int) -> None:
        super().__init__(
            f"task {task!r} needs at least {needed} input tokens (system prompt + required "
            f"sections), but max_input_tokens is {limit}"
        )
        self.needed = needed
        self.limit = limit


class Prompt(BaseModel):
    """A rendered prompt, ready for `Completion(messages=prompt.messages())`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(description="Task name (a key of prompts.TASKS).")
    system: str = Field(description="System message: role, rules and the output JSON schema.")
    user: str = Field(description="User message: the market context.")
    estimated_tokens: int = Field(
        ge=0, description="The router's estimate: ceil(chars/4) + 4 per message, + 3."
    )
    dropped_sections: list[str] = Field(
        default_factory=list,
        description="Sections left out to fit max_input_tokens, in drop order.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="task, symbol, timeframe, regime…"
    )

    def messages(self) -> list[dict[str, str]]:
        """OpenAI-style chat messages, system first."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def estimate_tokens(texts: list[str] | list[dict[str, str]]) -> int:
    """The router's estimate: ceil(len/4) per message text, plus 4 per message and 3 per request."""
    total = TOKENS_PER_REQUEST
    for item in texts:
        text = item["content"] if isinstance(item, dict) else item
        total += math.ceil(len(text) / 4) + TOKENS_PER_MESSAGE
    return total


def render_prompt(
    context: MarketContext,
    task: str | Task,
    *,
    max_input_tokens: int | None = None,
    template_dir: Path | None = None,
) -> Prompt:
    """The task's prompt for `context`, trimmed to `max_input_tokens` if given.

    Raises `PromptTooLong` if the system prompt plus required sections alone exceed the budget,
    `TemplateError` for a malformed template, ValueError for an unknown task.
    """
    spec = task if isinstance(task, Task) else get_task(task)
    if max_input_tokens is not None and max_input_tokens <= 0:
        raise ValueError(f"max_input_tokens must be positive, got {max_input_tokens}")
    template = load_template((template_dir or TEMPLATE_DIR) / spec.template, PLACEHOLDERS)
    values = placeholder_values(context, spec)
    facts = {"regime": context.regime, "style": context.style, "timeframe": context.timeframe}
    flags = _flags(context)

    system = template.system.substitute(values)
    kept = [
        (s.name, s.priority, s.text.substitute(values).strip())
        for s in template.sections
        if s.applies(facts, flags)
    ]
    kept = [k for k in kept if k[2]]
    dropped: list[str] = []

    def size() -> int:
        return estimate_tokens([system, "\n\n".join(text for _, _, text in kept)])

    if max_input_tokens is not None:
        # Least important first; among equals, the later section (file order is reading order).
        order = sorted(
            (i for i, (_, prio, _) in enumerate(kept) if prio < REQUIRED),
            key=lambda i: (kept[i][1], -i),
        )
        names = [kept[i][0] for i in order]
        while size() > max_input_tokens and names:
            name = names.pop(0)
            kept = [k for k in kept if k[0] != name]
            dropped.append(name)
        if size() > max_input_tokens:
            raise PromptTooLong(spec.name, size(), max_input_tokens)

    user = "\n\n".join(text for _, _, text in kept)
    return Prompt(
        task=spec.name,
        system=system,
        user=user,
        estimated_tokens=size(),
        dropped_sections=dropped,
        tags={"task": spec.name, **context.tags()},
    )


def _flags(context: MarketContext) -> set[str]:
    pos = context.position
    present = {
        "position": pos is not None,
        "equity": pos is not None and pos.account_equity is not None,
        "stop": pos is not None and pos.stop is not None,
        "patterns": bool(context.patterns),
    }
    return {flag for flag, on in present.items() if on}


def placeholder_values(context: MarketContext, task: Task) -> dict[str, str]:
    """Every placeholder's text for this context (numbers formatted for reading, not parsing)."""
    ind = context.indicators
    close = context.last_close
    pos = context.position
    values = {
        "task": task.name,
        "output_model": task.output.__name__,
        "schema": _schema(task.output),
        "symbol": context.symbol,
        "timeframe": context.timeframe,
        "as_of": _when(context.as_of),
        "regime": context.regime,
        "regime_text": context.regime.replace("_", " "),
        "style": context.style,
        "last_close": _num(close),
        "rsi": f"{ind.rsi:.1f}",
        "rsi_zone": "overbought" if ind.rsi > 70 else "oversold" if ind.rsi < 30 else "neutral",
        "macd": _num(ind.macd, 4),
        "macd_signal": _num(ind.macd_signal, 4),
        "macd_hist": _num(ind.macd_hist, 4),
        "ema_fast": _num(ind.ema_fast),
        "ema_slow": _num(ind.ema_slow),
        "sma_trend": _num(ind.sma_trend),
        "close_vs_sma": _pct(close / ind.sma_trend - 1, signed=True),
        "close_vs_ema_fast": _pct(close / ind.ema_fast - 1, signed=True),
        "atr": _num(ind.atr),
        "atr_pct": _pct(ind.atr / close),
        "atr_x2": _num(2 * ind.atr),
        "bb_width_pct": _pct(ind.bb_width),
        "realized_vol_pct": _pct(ind.realized_vol),
        "volume_change_pct": _pct(ind.volume_change, signed=True),
        "patterns": _patterns(context),
        "side": pos.side if pos else _NA,
        "entry": _num(pos.entry) if pos else _NA,
        "stop": _num(pos.stop) if pos and pos.stop is not None else "not set",
        "size": _num(pos.size) if pos else _NA,
        "account_equity": _num(pos.account_equity) if pos and pos.account_equity else "unknown",
        "risk_amount": _num(pos.risk_amount) if pos and pos.risk_amount is not None else _NA,
        "risk_pct": _pct(pos.risk_fraction) if pos and pos.risk_fraction is not None else _NA,
        "max_risk_pct": _pct(pos.max_risk_fraction) if pos else _NA,
        "risk_budget": _NA,
        "size_at_2atr": _NA,
    }
    if pos and pos.account_equity:
        budget = pos.account_equity * pos.max_risk_fraction
        values["risk_budget"] = _num(budget)
        if ind.atr > 0:
            values["size_at_2atr"] = _num(budget / (2 * ind.atr), 4)
    return values


@cache
def _schema(model: type[BaseModel]) -> str:
    """The model's JSON schema without per-field titles (they repeat the field names: tokens)."""
    schema = model.model_json_schema()
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return json.dumps(schema, ensure_ascii=False)


def _num(x: float, sig: int = 6) -> str:
    """About `sig` significant digits, fixed-point, no trailing zeros: 2506.85, 1.08345, 900."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _pct(x: float, *, signed: bool = False) -> str:
    """Percent with one decimal, or two significant digits below 1 % (FX: ATR 0.015 %)."""
    value = x * 100
    sign = "+" if signed and value >= 0 else ""
    if value == 0 or abs(value) >= 1:
        return f"{sign}{value:.1f}%"
    return f"{sign}{_num(value, 2)}%"


def _when(ts: datetime) -> str:
    if ts.tzinfo is None and (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0):
        return ts.date().isoformat()
    return ts.isoformat(sep=" ", timespec="minutes")


def _patterns(context: MarketContext) -> str:
    if not context.patterns:
        return "none"
    lines = []
    for p in context.patterns:
        ago = (
            "on the last bar"
            if p.bars_ago == 0
            else f"{p.bars_ago} bar{'s' if p.bars_ago > 1 else ''} ago"
        )
        lines.append(
            f"- {p.name.replace('_', ' ')} ({PATTERN_DIRECTION[p.name]}), {ago}, "
            f"confidence {p.confidence:.2f}"
        )
    return "\n".join(lines)
