"""Market context, prompt rendering and structured-output parsing for the router.

df = load_sample("sp500")
for ctx in contexts_for_bars(df, "SPX", "1d", start="2008-01-01"):
    prompt = render_prompt(ctx, "analysis", max_input_tokens=8000)
    ...  # send prompt.messages(); then parse_output(text, TASKS["analysis"].output)
"""

from prompts.context import (
    Indicators,
    MarketContext,
    Pattern,
    Position,
    Regime,
    Timeframe,
)
from prompts.market import build_context, compute_features, contexts_for_bars, warmup_bars
from prompts.ohlcv import DataError, load_sample, normalize_ohlcv
from prompts.outputs import RiskAssessment, TradeSignal
from prompts.parse import OutputError, parse_output
from prompts.regime import RegimeRules
from prompts.render import Prompt, PromptTooLong, estimate_tokens, render_prompt
from prompts.tasks import TASKS, Task, get_task
from prompts.template import TemplateError, reload_templates

__all__ = [
    "TASKS",
    "DataError",
    "Indicators",
    "MarketContext",
    "OutputError",
    "Pattern",
    "Position",
    "Prompt",
    "PromptTooLong",
    "Regime",
    "RegimeRules",
    "RiskAssessment",
    "Task",
    "TemplateError",
    "Timeframe",
    "TradeSignal",
    "build_context",
    "compute_features",
    "contexts_for_bars",
    "estimate_tokens",
    "get_task",
    "load_sample",
    "normalize_ohlcv",
    "parse_output",
    "reload_templates",
    "render_prompt",
    "warmup_bars",
]
