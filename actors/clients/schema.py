"""JSON Schema: the schemas callers send (tools, response_format) and the answers checked
against them, with the `jsonschema` library.

`check_answer` is what a provider's output validation calls for a request with a JSON
response_format: an answer that is not JSON, or not valid for the schema, is an
`invalid_response` attempt (the router falls back), like a TradeSignal that does not parse.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator, exceptions, validators

from actors.core.errors import ErrorClass, ProviderError

if TYPE_CHECKING:
    from actors.clients.base import Completion, Result

#: A schema is sent with every attempt and walked on every check: keep it bounded.
MAX_SCHEMA_CHARS = 100_000


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(schema: dict[str, Any], ref: str) -> bool:
    node: Any = schema
    for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def check_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError saying what is wrong if `schema` is not a usable JSON Schema.

    Only local references (`#/$defs/...`) are allowed: nothing is ever fetched.
    """
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise ValueError(f"schema is larger than {MAX_SCHEMA_CHARS} characters")
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "<root>"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise ValueError(f"$ref {ref!r}: only local references ('#/...') are supported")
        if not _resolves(schema, ref):
            raise ValueError(f"$ref {ref!r} points at nothing in the schema")


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return validators.validator_for(schema, default=Draft202012Validator)(schema)


def schema_error(schema: dict[str, Any], value: Any) -> str | None:
    """None if `value` is valid for `schema`, else the most relevant error and where."""
    validator = _validator(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    error = exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "<root>"
    return f"at {where}: {error.message}"[:300]


def check_answer(completion: Completion, result: Result) -> Any:
    """The parsed JSON answer of a JSON response_format (None for text or tool calls).

    Raises ProviderError:
    - OUTPUT_LIMIT when the answer stopped at max_tokens before anything usable came out
      (an answer that spent the cap thinking, or JSON cut short): billed, the caller's cap,
      not the provider's fault;
    - INVALID_RESPONSE when the answer is not JSON, not an object, or not valid for the
      schema (with every choice checked when n > 1).
    """
    choices = result.choices or [None]
    parsed: Any = None
    for choice in choices:
        text = result.text if choice is None else choice.text
        finish = result.finish_reason if choice is None else choice.finish_reason
        calls = result.tool_calls if choice is None else choice.tool_calls
        which = "" if choice is None or len(choices) == 1 else f"choice {choice.index}: "
        if finish == "length" and not text.strip() and not calls:
            thinking = f" ({result.reasoning_tokens} thinking tokens)" if result.reasoning_tokens else ""
            raise ProviderError(ErrorClass.OUTPUT_LIMIT, f"{which}max_tokens reached before any "
                                f"visible output{thinking}", provider=result.provider)
        fmt = completion.response_format
        if fmt is None or not fmt.is_json or calls:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            if finish == "length":
                raise ProviderError(ErrorClass.OUTPUT_LIMIT, f"{which}JSON answer cut at "
                                    "max_tokens", provider=result.provider) from None
            raise ProviderError(ErrorClass.INVALID_RESPONSE, f"{which}answer is not JSON: "
                                f"{text[:80]!r}", provider=result.provider) from None
        if fmt.json_schema is None:
            if not isinstance(value, dict):
                raise ProviderError(ErrorClass.INVALID_RESPONSE, f"{which}answer is a JSON "
                                    f"{type(value).__name__}, not an object",
                                    provider=result.provider)
        else:
            error = schema_error(fmt.json_schema.schema_, value)
            if error is not None:
                raise ProviderError(ErrorClass.INVALID_RESPONSE, f"{which}answer does not match "
                                    f"schema {fmt.json_schema.name!r} {error}",
                                    provider=result.provider)
        if parsed is None:
            parsed = value
    return parsed
