"""Prompt rendering: golden files per regime × task, section choice, and trimming to a budget.

Regenerate the golden files after an intended template change with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_prompts_render.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from prompts.context import REGIMES, TIMEFRAMES, MarketContext
from prompts.render import PLACEHOLDERS, Prompt, PromptTooLong, estimate_tokens, render_prompt
from prompts.tasks import TASKS
from prompts.template import TEMPLATE_DIR, TemplateError, load_template, reload_templates

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _indicators(close: float, **over: float) -> dict[str, float]:
    base = {
        "rsi": 55.0,
        "macd": close * 0.004,
        "macd_signal": close * 0.003,
        "macd_hist": close * 0.001,
        "ema_fast": close * 0.99,
        "ema_slow": close * 0.97,
        "atr": close * 0.012,
        "bb_width": 0.06,
        "volume_change": 0.1,
        "sma_trend": close * 0.93,
        "realized_vol": 0.15,
    }
    return {**base, **over}


# One representative context per regime; timeframes, positions and patterns vary across them so the
# golden files cover every style and the position / account / pattern sections.
CASES: dict[str, dict[str, Any]] = {
    "bull": {
        "symbol": "SPX",
        "timeframe": "1d",
        "as_of": datetime(2006, 11, 20),
        "regime": "bull",
        "last_close": 1400.63,
        "indicators": _indicators(1400.63, rsi=68.2),
        "patterns": [
            {"name": "breakout", "confidence": 0.55},
            {"name": "bullish_engulfing", "confidence": 0.4, "bars_ago": 2},
        ],
        "position": None,
    },
    "bear": {
        "symbol": "BTC-USD",
        "timeframe": "4h",
        "as_of": datetime(2022, 6, 13, 8, 0),
        "regime": "bear",
        "last_close": 23150.5,
        "indicators": _indicators(
            23150.5,
            rsi=24.8,
            macd=-610.0,
            macd_signal=-420.0,
            macd_hist=-190.0,
            ema_fast=25400.0,
            ema_slow=27900.0,
            sma_trend=36800.0,
            realized_vol=0.3,
        ),
        "patterns": [{"name": "breakdown", "confidence": 0.8}],
        "position": {
            "side": "long",
            "entry": 26000,
            "stop": 22500,
            "size": 0.5,
            "account_equity": 50_000,
        },
    },
    "sideways": {
        "symbol": "EURUSD",
        "timeframe": "5m",
        "as_of": datetime(2018, 3, 7, 14, 35),
        "regime": "sideways",
        "last_close": 1.24105,
        "indicators": _indicators(
            1.24105,
            rsi=49.1,
            macd=0.00002,
            macd_signal=-0.00001,
            macd_hist=0.00003,
            ema_fast=1.24098,
            ema_slow=1.24102,
            sma_trend=1.2409,
            atr=0.00018,
            bb_width=0.002,
            volume_change=-0.3,
            realized_vol=0.06,
        ),
        "patterns": [],
        "position": {"side": "short", "entry": 1.2415, "stop": 1.2425, "size": 100_000},
    },
    "high_volatility": {
        "symbol": "NDX",
        "timeframe": "1w",
        "as_of": datetime(2008, 10, 10),
        "regime": "high_volatility",
        "last_close": 1204.5,
        "indicators": _indicators(
            1204.5,
            rsi=21.7,
            macd=-95.0,
            macd_signal=-60.0,
            macd_hist=-35.0,
            ema_fast=1520.0,
            ema_slow=1700.0,
            atr=110.0,
            bb_width=0.45,
            volume_change=1.4,
            sma_trend=1810.0,
            realized_vol=0.71,
        ),
        "patterns": [
            {"name": "doji", "confidence": 0.7},
            {"name": "death_cross", "confidence": 0.9, "bars_ago": 1},
        ],
        "position": {
            "side": "long",
            "entry": 1300,
            "size": 20,
            "account_equity": 250_000,
            "max_risk_fraction": 0.005,
        },
    },
}


def _context(regime: str, **over: Any) -> MarketContext:
    return MarketContext.model_validate({**CASES[regime], **over})


def _golden_text(prompt: Prompt) -> str:
    return (
        f"=== system ===\n{prompt.system}\n=== user ===\n{prompt.user}\n=== meta ===\n"
        f"estimated_tokens: {prompt.estimated_tokens}\ndropped_sections: {prompt.dropped_sections}\n"
    )


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("regime", REGIMES)
def test_golden(regime: str, task: str) -> None:
    prompt = render_prompt(_context(regime), task)
    path = GOLDEN / f"{task}_{regime}.txt"
    text = _golden_text(prompt)
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path.name}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


def test_golden_set_is_complete() -> None:
    names = {p.name for p in GOLDEN.glob("*.txt")}
    assert names == {f"{t}_{r}.txt" for t in TASKS for r in REGIMES}


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("timeframe", ["1m", "1h", "1w"])
@pytest.mark.parametrize("with_position", [True, False])
def test_sections_follow_regime_style_and_position(
    regime: str, task: str, timeframe: str, with_position: bool
) -> None:
    ctx = _context(regime, timeframe=timeframe)
    if not with_position:
        ctx = ctx.with_position(None)
    prompt = render_prompt(ctx, task)
    everything = prompt.system + prompt.user

    # The simulator tells the risk task apart by this word, and only by it.
    assert ("RiskAssessment" in everything) == (task == "risk")
    assert ("TradeSignal" in prompt.system) == (task != "risk")
    assert '"properties"' in prompt.system  # the output model's JSON schema is embedded

    for other in REGIMES:
        heading = f"## Regime: {other.replace('_', ' ')}"
        assert (heading in prompt.user) == (other == regime)
    for style in ("scalping", "swing", "position"):
        assert (f"## Horizon: {style}" in prompt.user) == (style == ctx.style)
    assert not re.search(r"\$\{?[a-z_]+", prompt.user + prompt.system.split("{", 1)[0])
    assert ctx.symbol in prompt.user
    assert prompt.tags == {"task": task, **ctx.tags()}


def test_messages_and_token_estimate() -> None:
    prompt = render_prompt(_context("bear"), "risk")
    messages = prompt.messages()
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == prompt.system and messages[1]["content"] == prompt.user
    assert prompt.estimated_tokens == estimate_tokens(messages)
    assert estimate_tokens(["abcde", ""]) == 3 + (2 + 4) + (0 + 4)


def test_token_estimate_is_the_routers() -> None:
    tokens = pytest.importorskip("actors.core.tokens")
    from actors.clients.base import Message

    prompt = render_prompt(_context("sideways"), "pattern")
    as_router_sees_it = [Message(**m) for m in prompt.messages()]
    assert prompt.estimated_tokens == tokens.estimate_messages(as_router_sees_it)


def test_risk_numbers_are_precomputed_for_the_model() -> None:
    user = render_prompt(_context("bear"), "risk").user
    assert "Loss if stopped: 1750." in user  # (26000 − 22500) × 0.5
    assert "This position risks 3.5% of equity." in user
    assert "1.0% of equity = 500." in user
    no_stop = render_prompt(_context("high_volatility"), "risk").user
    assert "No stop is set" in no_stop and "Loss if stopped" not in no_stop


def _sections(prompt_user: str) -> list[str]:
    return [block for block in prompt_user.split("\n\n") if block]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_trimming_drops_whole_sections_least_important_first(task: str) -> None:
    ctx = _context("high_volatility")
    full = render_prompt(ctx, task)
    template = load_template(TEMPLATE_DIR / TASKS[task].template, PLACEHOLDERS)
    priority = {s.name: s.priority for s in template.sections}

    budgets = range(full.estimated_tokens, 0, -25)
    last_dropped: list[str] = []
    for budget in budgets:
        try:
            prompt = render_prompt(ctx, task, max_input_tokens=budget)
        except PromptTooLong as exc:
            assert exc.limit == budget and exc.needed > budget
            assert "max_input_tokens" in str(exc)
            break
        assert prompt.estimated_tokens <= budget
        # Dropping only grows as the budget shrinks, in non-decreasing priority order.
        assert prompt.dropped_sections[: len(last_dropped)] == last_dropped
        prios = [priority[name] for name in prompt.dropped_sections]
        assert prios == sorted(prios)
        assert not any(
            template.sections[[s.name for s in template.sections].index(n)].required
            for n in prompt.dropped_sections
        )
        # Every kept paragraph is one the full prompt has, whole.
        assert set(_sections(prompt.user)) <= set(_sections(full.user))
        assert prompt.system == full.system
        last_dropped = prompt.dropped_sections
    else:
        pytest.fail("never reached PromptTooLong")
    assert last_dropped, "a budget between minimum and full should drop something"
    assert render_prompt(ctx, task, max_input_tokens=full.estimated_tokens).dropped_sections == []


def test_prompt_too_long_when_even_the_minimum_does_not_fit() -> None:
    with pytest.raises(PromptTooLong, match="needs at least"):
        render_prompt(_context("bull"), "analysis", max_input_tokens=50)
    with pytest.raises(ValueError, match="positive"):
        render_prompt(_context("bull"), "analysis", max_input_tokens=0)
    with pytest.raises(ValueError, match="unknown 'poetry'"):
        render_prompt(_context("bull"), "poetry")


def test_all_templates_load_with_known_placeholders() -> None:
    for task in TASKS.values():
        template = load_template(TEMPLATE_DIR / task.template, PLACEHOLDERS)
        assert "schema" in template.system.get_identifiers()
        assert any(s.required for s in template.sections)
        # Every regime has guidance in every task.
        conditions = {c for s in template.sections for c in s.when}
        assert {f"regime:{r}" for r in REGIMES} <= conditions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- system -->\nHi $nope\n", r"unknown placeholder\(s\) \['nope'\]"),
        ("<!-- system -->\nCosts $5\n", r"write \$\$"),
        ("<!-- system -->\nx\n<!-- section name=a -->\ny\n", "needs priority="),
        (
            "<!-- system -->\nx\n<!-- section name=a priority=1 when=regime:crab -->\ny\n",
            r"unknown regime \['crab'\]",
        ),
        (
            "<!-- system -->\nx\n<!-- section name=a priority=1 when=moon -->\ny\n",
            "bad condition 'moon'",
        ),
        (
            "<!-- system -->\nx\n<!-- section name=a priority=1 -->\ny\n<!-- section name=a priority=2 -->\nz\n",
            "used twice",
        ),
        ("stray words\n<!-- system -->\nx\n", "text before the first"),
        ("<!-- section name=a priority=1 -->\ny\n", r"no <!-- system --> block"),
    ],
)
def test_malformed_templates_are_reported(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "analysis.md").write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match=message):
        render_prompt(_context("bull"), "analysis", template_dir=tmp_path)


def test_custom_template_dir_and_editor_notes(tmp_path: Path) -> None:
    (tmp_path / "analysis.md").write_text(
        "<!-- a note for editors -->\n<!-- system -->\nAnswer as $output_model. Costs $$0.\n"
        "<!-- section name=a priority=required -->\n$symbol <!-- hidden -->at $last_close\n"
        "<!-- section name=b priority=5 when=timeframe:1m|5m -->\nshort bars\n",
        encoding="utf-8",
    )
    prompt = render_prompt(_context("bull"), "analysis", template_dir=tmp_path)
    assert prompt.system == "Answer as TradeSignal. Costs $0."
    assert prompt.user == "SPX at 1400.63"
    short = render_prompt(_context("bull", timeframe="5m"), "analysis", template_dir=tmp_path)
    assert short.user.endswith("short bars")


def test_reload_picks_up_edits(tmp_path: Path) -> None:
    path = tmp_path / "analysis.md"
    path.write_text("<!-- system -->\nv1\n", encoding="utf-8")
    assert render_prompt(_context("bull"), "analysis", template_dir=tmp_path).system == "v1"
    path.write_text("<!-- system -->\nv2\n", encoding="utf-8")
    reload_templates()
    assert render_prompt(_context("bull"), "analysis", template_dir=tmp_path).system == "v2"


def test_every_timeframe_renders() -> None:
    for tf in TIMEFRAMES:
        assert f"on {tf} bars" in render_prompt(_context("sideways", timeframe=tf), "analysis").user
