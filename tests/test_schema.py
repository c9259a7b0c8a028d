"""`check_answer`: what a provider's answer amounts to for a request with a JSON response
format, and the empty answer at the output cap (all thinking) that is the caller's cap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.clients import Completion, Result
from actors.clients.base import Choice
from actors.clients.schema import check_answer, check_schema, schema_error
from actors.core.errors import FALLBACK, PROVIDER_FAULT, RETRYABLE, ErrorClass, ProviderError

SIGNAL = {"type": "object", "properties": {
    "direction": {"enum": ["long", "short", "flat"]},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "levels": {"type": "array", "items": {"$ref": "#/$defs/level"}}},
    "required": ["direction", "confidence"], "additionalProperties": False,
    "$defs": {"level": {"type": "number"}}}


def ask(fmt: dict[str, Any] | None) -> Completion:
    return Completion(messages=[{"role": "user", "content": "SPY?"}], response_format=fmt)


SCHEMA = ask({"type": "json_schema", "json_schema": {"name": "signal", "schema": SIGNAL}})
OBJECT = ask({"type": "json_object"})


def result(text: str, finish: str = "stop", **kw: Any) -> Result:
    return Result(provider="p", model="m", text=text, input_tokens=10, output_tokens=5,
                  finish_reason=finish, latency_s=0.1, **kw)


def test_valid_answers_come_back_parsed() -> None:
    good = {"direction": "long", "confidence": 0.7, "levels": [1.5, 2]}
    assert check_answer(SCHEMA, result(json.dumps(good))) == good
    assert check_answer(OBJECT, result('{"any": [1]}')) == {"any": [1]}
    assert check_answer(ask(None), result("prose is fine")) is None
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert check_answer(SCHEMA, result("", "tool_calls", tool_calls=calls)) is None


@pytest.mark.parametrize(("completion", "text", "finish", "cls", "words"), [
    (SCHEMA, '{"direction": "up", "confidence": 0.5}', "stop", ErrorClass.INVALID_RESPONSE,
     "'up' is not one of"),
    (SCHEMA, '{"direction": "long"}', "stop", ErrorClass.INVALID_RESPONSE,
     "'confidence' is a required property"),
    (SCHEMA, '{"direction": "long", "confidence": 2}', "stop", ErrorClass.INVALID_RESPONSE,
     "at confidence"),
    (SCHEMA, '{"direction": "long", "confidence": 0.5, "x": 1}', "stop",
     ErrorClass.INVALID_RESPONSE, "Additional properties"),
    (SCHEMA, '```json\n{"direction": "long"}\n```', "stop", ErrorClass.INVALID_RESPONSE,
     "not JSON"),
    (OBJECT, "[1, 2]", "stop", ErrorClass.INVALID_RESPONSE, "JSON list, not an object"),
    (OBJECT, '{"direction": "lo', "length", ErrorClass.OUTPUT_LIMIT, "cut at max_tokens"),
    (ask(None), "", "length", ErrorClass.OUTPUT_LIMIT, "before any visible output"),
])
def test_unusable_answers(completion: Completion, text: str, finish: str, cls: ErrorClass,
                          words: str) -> None:
    with pytest.raises(ProviderError) as exc:
        check_answer(completion, result(text, finish, reasoning_tokens=5))
    assert exc.value.error_class is cls and words in exc.value.message
    assert exc.value.provider == "p"


def test_every_choice_is_checked() -> None:
    choices = [Choice(index=0, text='{"direction": "long", "confidence": 0.1}'),
               Choice(index=1, text='{"direction": "sideways", "confidence": 0.1}')]
    with pytest.raises(ProviderError, match="choice 1: answer does not match schema 'signal'"):
        check_answer(SCHEMA, result(choices[0].text, choices=choices))


def test_output_limit_is_billed_but_not_the_providers_fault() -> None:
    """An answer that spent max_tokens thinking: another provider may answer, the breaker
    must not count it, and no retry on the same provider will change it."""
    cls = ErrorClass.OUTPUT_LIMIT
    assert cls in FALLBACK and cls not in PROVIDER_FAULT and cls not in RETRYABLE
    with pytest.raises(ProviderError, match=r"\(400 thinking tokens\)"):
        check_answer(ask(None), result("", "length", reasoning_tokens=400))


def test_schema_checks() -> None:
    check_schema(SIGNAL)
    assert schema_error(SIGNAL, {"direction": "flat", "confidence": 0, "levels": ["x"]}) == \
        "at levels/0: 'x' is not of type 'number'"
    with pytest.raises(ValueError, match="larger than"):
        check_schema({"type": "object", "description": "x" * 200_000})
