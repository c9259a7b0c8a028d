"""Structured output in the Python API: what `output=` asks the router for, and the model
instance the caller gets back in `result.parsed`.

A pydantic class travels as its JSON Schema (a `json_schema` response_format): the actors
validate the answer against the schema (an answer that does not validate is an
`invalid_response` attempt, and the router falls back), and the instance is built here, at
the caller — a class defined in a notebook does not unpickle inside an actor. The built-in
outputs (`"trade_signal"`, `"risk_assessment"`) are validated by the prompts' own parser in
the provider actor and come back as TradeSignal / RiskAssessment instances the same way.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from actors.clients.base import ResponseFormat
from actors.core.errors import ErrorClass
from actors.routing.route import RouteResult, RoutingError
from actors.rpc.messages import OutputKind

OutputLike = OutputKind | type[BaseModel]


def schema_name(cls: type[BaseModel]) -> str:
    """The class name as a schema name every provider accepts (clients.base.NAME_PATTERN)."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", cls.__name__)[:64] or "answer"
    return name if re.match(r"[a-zA-Z_]", name) else ("_" + name)[:64]


def response_format_for(cls: type[BaseModel]) -> ResponseFormat:
    """A `json_schema` response_format asking for an instance of `cls`."""
    return ResponseFormat.model_validate({"type": "json_schema", "json_schema": {
        "name": schema_name(cls), "schema": cls.model_json_schema(),
        "description": (cls.__doc__ or "").strip()[:500] or None}})


def builtin_model(kind: OutputKind) -> type[BaseModel] | None:
    if kind == "text":
        return None
    from prompts.outputs import RiskAssessment, TradeSignal

    return TradeSignal if kind == "trade_signal" else RiskAssessment


def request_fields(output: OutputLike, params: dict[str, Any]) -> tuple[dict[str, Any],
                                                                       type[BaseModel] | None]:
    """RouteRequest fields for `output=` and the model to build the answer with (None: text).

    A class and an explicit `response_format` together are refused: which one should win?
    """
    if isinstance(output, type) and issubclass(output, BaseModel):
        if params.get("response_format") is not None:
            raise ValueError("give output=<model class> or response_format, not both")
        return {"response_format": response_format_for(output)}, output
    if isinstance(output, str):
        return {"output": output}, builtin_model(output)  # type: ignore[arg-type]
    raise TypeError(f"output must be 'text', 'trade_signal', 'risk_assessment' or a pydantic "
                    f"model class, not {output!r}")


def as_model(result: RouteResult, cls: type[BaseModel] | None) -> RouteResult:
    """`result` with `parsed` as an instance of `cls` (cost, trace and the rest kept)."""
    if cls is None or result.parsed is None or isinstance(result.parsed, cls):
        return result
    try:
        value = cls.model_validate(result.parsed)
    except ValidationError as exc:  # the schema allowed what the class's own checks refuse
        raise RoutingError(ErrorClass.INVALID_RESPONSE, f"the answer matches the JSON schema "
                           f"but not {cls.__name__}: {exc.errors()[0]['msg']} at "
                           f"{'.'.join(map(str, exc.errors()[0]['loc'])) or '<root>'}",
                           result.trace) from None
    return result.model_copy(update={"parsed": value})
