"""parse_output: JSON found in fences and prose, validated, or an OutputError saying what was wrong."""

from __future__ import annotations

import json

import pytest

from prompts.outputs import RiskAssessment, TradeSignal
from prompts.parse import OutputError, parse_output
from prompts.tasks import TASKS, get_task

SIGNAL = {
    "direction": "long",
    "confidence": 0.72,
    "entry": 100.0,
    "stop": 95.0,
    "take_profit": 112.0,
    "horizon": "3-5 days",
    "rationale": "RSI 55 and MACD histogram rising above the 200-day SMA.",
}
RISK = {"risk_score": 0.4, "max_position_size": 120, "stop_distance": 8.5, "warnings": ["gap risk"]}


def test_plain_json() -> None:
    got = parse_output(json.dumps(SIGNAL), TradeSignal)
    assert got == TradeSignal(**SIGNAL)


def test_fenced_json_with_prose_around() -> None:
    text = f"Sure! Here is my call:\n```json\n{json.dumps(SIGNAL, indent=2)}\n```\nGood luck."
    assert parse_output(text, TradeSignal).confidence == 0.72
    bare_fence = f"```\n{json.dumps(RISK)}\n```"
    assert parse_output(bare_fence, RiskAssessment).warnings == ["gap risk"]


def test_prose_wrapped_without_fence() -> None:
    text = (
        f"Based on the data, my assessment is {json.dumps(RISK)} — size down if volatility rises."
    )
    got = parse_output(text, RiskAssessment)
    assert got.max_position_size == 120 and got.stop_distance == 8.5


def test_braces_inside_strings_and_nested_objects() -> None:
    tricky = {**SIGNAL, "rationale": 'Breakout {confirmed} above "resistance}" at 99 {'}
    text = "Thinking {not json} ... " + json.dumps(
        {**tricky, "extra": {"nested": {"deep": [1, {"x": "}"}]}}}
    )
    got = parse_output(text, TradeSignal)
    assert got.rationale == tricky["rationale"]


def test_example_object_before_the_real_answer_is_skipped() -> None:
    text = 'The format is {"direction": "..."}; my answer: ' + json.dumps(SIGNAL)
    assert parse_output(text, TradeSignal).direction == "long"


def test_error_reports_the_closest_candidate() -> None:
    text = 'Format: {"direction": "..."}. Answer: ' + json.dumps({**SIGNAL, "confidence": 2})
    with pytest.raises(OutputError, match=r"TradeSignal: confidence: .*less than or equal to 1$"):
        parse_output(text, TradeSignal)


def test_unknown_keys_are_ignored() -> None:
    got = parse_output(json.dumps({**RISK, "notes": "fine"}), RiskAssessment)
    assert not hasattr(got, "notes")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty response"),
        ("I cannot help with that.", "no JSON object found"),
        ("{broken json", "no JSON object found"),
        ("[1, 2, 3]", "no JSON object found"),
        (
            json.dumps({**SIGNAL, "confidence": 1.5}),
            "confidence: Input should be less than or equal to 1",
        ),
        (
            json.dumps({**SIGNAL, "direction": "up"}),
            "direction: Input should be 'long', 'short' or 'flat'",
        ),
        (
            json.dumps({k: v for k, v in SIGNAL.items() if k != "horizon"}),
            "horizon: Field required",
        ),
        (json.dumps({**SIGNAL, "stop": 101.0}), "stop 101.0 must be below entry 100.0 for a long"),
        (
            json.dumps({**SIGNAL, "direction": "short"}),
            "stop 95.0 must be above entry 100.0 for a short",
        ),
        (
            '{"direction": "long", "confidence": NaN, "horizon": "1d", "rationale": "x"}',
            "confidence",
        ),
    ],
)
def test_invalid_answers_raise_output_error(text: str, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        parse_output(text, TradeSignal)


def test_wrong_model_names_the_model_and_fields() -> None:
    with pytest.raises(OutputError) as info:
        parse_output(json.dumps(RISK), TradeSignal)
    assert "TradeSignal" in str(info.value) and "direction: Field required" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_short_and_flat_signals() -> None:
    short = {**SIGNAL, "direction": "short", "stop": 105.0, "take_profit": 90.0}
    assert parse_output(json.dumps(short), TradeSignal).direction == "short"
    flat = {"direction": "flat", "confidence": 0.2, "horizon": "n/a", "rationale": "No edge."}
    assert parse_output(json.dumps(flat), TradeSignal).entry is None


def test_task_registry() -> None:
    assert set(TASKS) == {"analysis", "pattern", "risk"}
    assert TASKS["analysis"].output is TASKS["pattern"].output is TradeSignal
    assert (
        get_task("risk").output is RiskAssessment
        and get_task("risk").output_kind == "risk_assessment"
    )
    with pytest.raises(ValueError, match="unknown 'chat'"):
        get_task("chat")
