"""Gemini `generateContent` requests as the simulator reads them."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_snake

from actors.simulator.ask import Ask, ToolDef, WireError, set_choice


class _G(BaseModel):
    """Gemini's JSON parser takes proto field names too: `thinking_budget` as well as
    `thinkingBudget` (the google-genai SDK sends some nested configs that way)."""

    model_config = ConfigDict(alias_generator=to_snake, populate_by_name=True)


class _GPart(_G):
    text: str | None = None
    thought: bool | None = None
    functionCall: dict[str, Any] | None = None
    functionResponse: dict[str, Any] | None = None


class _Content(_G):
    role: str | None = None
    parts: list[_GPart] = Field(min_length=1)


class _ThinkingConfig(_G):
    thinkingBudget: int | None = Field(None, ge=-1)
    includeThoughts: bool | None = None


class _GenerationConfig(_G):
    maxOutputTokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    topP: float | None = Field(None, ge=0, le=1)
    stopSequences: list[str] | None = Field(None, max_length=5)
    seed: int | None = None
    candidateCount: int | None = Field(None, ge=1, le=8)
    presencePenalty: float | None = None
    frequencyPenalty: float | None = None
    responseLogprobs: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    responseMimeType: str | None = None
    responseSchema: dict[str, Any] | None = None
    responseJsonSchema: dict[str, Any] | None = None
    thinkingConfig: _ThinkingConfig | None = None


class _Declaration(_G):
    name: str = Field(min_length=1)
    parameters: dict[str, Any] | None = None
    parametersJsonSchema: dict[str, Any] | None = None


class _GTool(_G):
    functionDeclarations: list[_Declaration] | None = None


class _CallingConfig(_G):
    mode: Literal["AUTO", "ANY", "NONE", "MODE_UNSPECIFIED", "VALIDATED"] = "AUTO"
    allowedFunctionNames: list[str] | None = None


class _ToolConfig(_G):
    functionCallingConfig: _CallingConfig | None = None


class _GeminiRequest(_G):
    contents: list[_Content] = Field(min_length=1)
    systemInstruction: _Content | None = None
    generationConfig: _GenerationConfig | None = None
    tools: list[_GTool] | None = None
    toolConfig: _ToolConfig | None = None


def _part_text(p: _GPart) -> str:
    if p.text is not None:
        return "" if p.thought else p.text
    if p.functionResponse is not None:
        return json.dumps(p.functionResponse.get("response", {}))
    return ""


def parse_gemini(body: bytes, model: str) -> Ask:
    g = _GeminiRequest.model_validate_json(body)
    contents = ([g.systemInstruction] if g.systemInstruction else []) + g.contents
    cfg = g.generationConfig or _GenerationConfig()
    system = "\n".join(_part_text(p) for p in g.systemInstruction.parts) \
        if g.systemInstruction else ""
    ask = Ask(model, "\n".join(_part_text(p) for c in contents for p in c.parts),
              cfg.maxOutputTokens, stop=cfg.stopSequences, n=cfg.candidateCount or 1,
              seed=cfg.seed, cache_prefix=system,
              after_tool=any(p.functionResponse is not None for p in g.contents[-1].parts),
              called={str(p.functionCall.get("name")) for c in g.contents for p in c.parts
                      if p.functionCall})
    ask.penalties = bool(cfg.presencePenalty or cfg.frequencyPenalty)
    if cfg.responseLogprobs:
        ask.logprobs = cfg.logprobs or 0
    if cfg.thinkingConfig is not None:
        ask.thinking = cfg.thinkingConfig.thinkingBudget
    schema = cfg.responseJsonSchema or cfg.responseSchema
    if schema is not None and cfg.responseMimeType != "application/json":
        raise WireError("generationConfig.responseMimeType: must be application/json with a "
                        "response schema")
    ask.json_mode, ask.schema = cfg.responseMimeType == "application/json", schema
    for tool in g.tools or ():
        ask.tools += [ToolDef(d.name, d.parametersJsonSchema or d.parameters)
                      for d in tool.functionDeclarations or ()]
    fc = g.toolConfig.functionCallingConfig if g.toolConfig else None
    if fc is not None and fc.mode in ("ANY", "NONE", "VALIDATED"):
        names = fc.allowedFunctionNames or []
        set_choice(ask, "none" if fc.mode == "NONE" else names[0] if len(names) == 1 else "required")
    if ask.tools and ask.json_mode:
        raise WireError("Function calling with a response mime type: 'application/json' is "
                        "unsupported")
    return ask
