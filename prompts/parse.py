"""Pull the structured answer out of a model's text.

Models wrap JSON in ```json fences, prose ("Here is my analysis: {...} Let me know...") or both, and
sometimes show an example object before the real one. Candidates are taken in order — fenced
blocks first, then every `{` in the text that starts a complete JSON object (decoded by the json
module, so braces inside strings are handled) — and the first that validates wins. If none does,
`OutputError` says why, with the field errors of the closest candidate (fewest errors); the router maps it to an
`invalid_response` attempt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_CANDIDATES = 20
_decoder = json.JSONDecoder()


class OutputError(ValueError):
    """A model's answer has no valid structured output (message says what was wrong)."""


def parse_output(text: str, model_cls: type[M]) -> M:
    """The first JSON object in `text` that validates as `model_cls`, else `OutputError`."""
    if not isinstance(text, str) or not text.strip():
        raise OutputError("empty response: no JSON object found")
    closest: ValidationError | None = None
    for obj in _candidates(text):
        try:
            return model_cls.model_validate(obj)
        except ValidationError as exc:
            if closest is None or exc.error_count() < closest.error_count():
                closest = exc
    if closest is None:
        raise OutputError("no JSON object found in the response")
    raise OutputError(f"JSON does not match {model_cls.__name__}: {_describe(closest)}")


def _candidates(text: str) -> Iterator[dict[str, Any]]:
    """JSON objects in preference order (fenced first; a fenced one recurs in the full-text scan)."""
    seen = 0
    for block in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        for obj in _objects(block):
            yield obj
            seen += 1
            if seen >= _MAX_CANDIDATES:
                return


def _objects(text: str) -> Iterator[dict[str, Any]]:
    """Each top-level JSON object in `text`, scanning left to right."""
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict):
            yield obj
        pos = text.find("{", end)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(object)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
