"""A JSON value valid for a JSON Schema: how a simulated model answers a `json_schema`
response format or fills a tool call's arguments.

Covers what pydantic, the OpenAI and Anthropic SDKs and Gemini's schema dialect produce:
`$ref`/`$defs`, `allOf`/`anyOf`/`oneOf`, `enum`/`const`, objects, arrays (`items`,
`prefixItems`, min/max items), strings (length, a few formats), numbers (bounds, multipleOf),
booleans and null; Gemini's upper-case type names too. Where the caller's schema and the
model's natural answer agree on a property (a TradeSignal's `direction`), the natural value
is kept, so a schema'd answer still says what the model thinks.
"""

from __future__ import annotations

import math
import random
from typing import Any

from jsonschema import Draft202012Validator, validators

MAX_DEPTH = 12
_FORMATS = {"date-time": "2026-11-30T12:00:00Z", "date": "2026-11-30", "time": "12:00:00Z",
            "email": "desk@example.com", "uri": "https://example.com/", "uuid":
            "00000000-0000-4000-8000-000000000000"}
_WORDS = ("alpha", "trend", "signal", "range", "bid", "ask", "hedge", "carry", "delta")


class Generator:
    """Values for one schema (its `$defs` resolve against the root)."""

    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def value(self, schema: Any, hint: Any = None, depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return hint if hint is not None else None
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"]), hint, depth + 1)
        if hint is not None and not (isinstance(hint, dict) and "properties" in schema) \
                and self._fits(schema, hint):
            return hint  # an object with properties is built from them, each with its hint
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(schema["enum"])
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                part = self._resolve(part["$ref"]) if "$ref" in part else part
                merged = _merge(merged, part)
            return self.value({**merged, **{k: v for k, v in schema.items() if k != "allOf"}},
                              hint, depth + 1)
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                options = [o for o in schema[key] if _type_of(o) != "null"] or schema[key]
                return self.value(options[0], hint, depth + 1)
        kind = _type_of(schema)
        if kind == "object" or (kind is None and "properties" in schema):
            return self._object(schema, hint, depth)
        if kind == "array":
            return self._array(schema, hint, depth)
        if kind == "string":
            return self._string(schema)
        if kind in ("number", "integer"):
            return self._number(schema, kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return hint if hint is not None else {}

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else ():
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) \
                if isinstance(node, dict) else {}
        return node

    def _fits(self, schema: dict[str, Any], value: Any) -> bool:
        sub = {**schema, **{k: self.root[k] for k in ("$defs", "definitions") if k in self.root}}
        try:
            cls = validators.validator_for(self.root, default=Draft202012Validator)
            return cls(_lower(sub)).is_valid(value)
        except Exception:  # a schema this check cannot handle: generate instead
            return False

    def _object(self, schema: dict[str, Any], hint: Any, depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or props)
        hint = hint if isinstance(hint, dict) else {}
        return {name: self.value(sub, hint.get(name), depth + 1)
                for name, sub in props.items() if name in required or name in hint}

    def _array(self, schema: dict[str, Any], hint: Any, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = max(int(schema.get("minItems", 1)), len(prefix))
        high = int(schema.get("maxItems", max(low, 3)))
        n = min(max(low, min(2, high)), high)
        hint = hint if isinstance(hint, list) else []
        items = schema.get("items", {})
        return [self.value(prefix[i] if i < len(prefix) else items,
                           hint[i] if i < len(hint) else None, depth + 1) for i in range(n)]

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt]
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        text = " ".join(self.rng.choice(_WORDS) for _ in range(2))
        text = (text * (low // max(len(text), 1) + 1))[:max(low, len(text))]
        return text[:high] if high is not None else text

    def _number(self, schema: dict[str, Any], integer: bool) -> float | int:
        low, open_low = _bound(schema, "minimum", "exclusiveMinimum", max)
        high, open_high = _bound(schema, "maximum", "exclusiveMaximum", min)
        if low is None and high is None:
            low, high = 0.0, 100.0
        elif low is None:
            low = high - 100.0  # type: ignore[operator]
        elif high is None:
            high = low + 100.0
        assert low is not None and high is not None
        step = schema.get("multipleOf")
        step = float(step) if isinstance(step, int | float) and step > 0 else None
        if integer:
            step = float(max(1, math.ceil(step))) if step else 1.0
        if step is not None:
            first, last = math.ceil(low / step), math.floor(high / step)
            if open_low and first * step <= low:
                first += 1
            if open_high and last * step >= high:
                last -= 1
            k = self.rng.randint(first, last) if last >= first else first
            return int(k * step) if integer else round(k * step, 10)
        value = round(self.rng.uniform(low, high), 4)
        if (open_low and value <= low) or (open_high and value >= high) or not low <= value <= high:
            value = (low + high) / 2
        return value


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str,
           tighter: Any) -> tuple[float | None, bool]:
    """(bound, open?) from JSON Schema's inclusive and exclusive keywords (either draft)."""
    inc, exc = schema.get(inclusive), schema.get(exclusive)
    if isinstance(exc, bool):  # draft 4: a flag on the inclusive bound
        return (float(inc), exc) if _num(inc) else (None, False)
    bounds = [(float(inc), False)] if _num(inc) else []
    if _num(exc):
        bounds.append((float(exc), True))
    if not bounds:
        return None, False
    value = tighter(b for b, _ in bounds)
    return value, any(b == value and is_open for b, is_open in bounds)


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), kind[0] if kind else None)
    return kind.lower() if isinstance(kind, str) else None


def _lower(schema: Any) -> Any:
    """Gemini's OpenAPI dialect writes types in capitals ("OBJECT"); JSON Schema does not."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower(v))
                for k, v in schema.items() if k != "nullable"}
    if isinstance(schema, list):
        return [_lower(v) for v in schema]
    return schema


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if "properties" in a and "properties" in b:
        out["properties"] = {**a["properties"], **b["properties"]}
    if "required" in a and "required" in b:
        out["required"] = sorted(set(a["required"]) | set(b["required"]))
    return out


def instance(schema: dict[str, Any], rng: random.Random, hint: Any = None) -> Any:
    """A value valid for `schema` (a best effort for `pattern`, which is not generated)."""
    return Generator(schema, rng).value(schema, hint)
