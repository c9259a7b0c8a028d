"""The prompt tasks: which template renders each, and which output model its answer must match."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from prompts.outputs import RiskAssessment, TradeSignal


@dataclass(frozen=True)
class Task:
    """One kind of question we ask a model."""

    name: str
    template: str
    """File in prompts/templates/ holding the system prompt and the user sections."""
    output: type[BaseModel]
    """Model the answer is parsed into (its JSON schema is embedded in the system prompt)."""
    output_kind: str
    """The same, in the words of `actors.rpc.messages.OutputKind`."""
    description: str


TASKS: dict[str, Task] = {
    "analysis": Task(
        "analysis",
        "analysis.md",
        TradeSignal,
        "trade_signal",
        "Read the market; give a trade call.",
    ),
    "pattern": Task(
        "pattern",
        "pattern.md",
        TradeSignal,
        "trade_signal",
        "Judge recent patterns; give a trade call.",
    ),
    "risk": Task(
        "risk", "risk.md", RiskAssessment, "risk_assessment", "Score risk and cap position size."
    ),
}


def get_task(name: str) -> Task:
    """The task called `name`, or a ValueError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task: unknown {name!r}; one of {sorted(TASKS)}") from None
