"""Which request parameters each provider honours, and the pure check the router uses.

`unsupported(spec, completion)` lists every parameter of a request this provider cannot
honour, with the reason: the router excludes the provider for that request (the trace says
why), or the endpoint answers 400 naming the parameter when no provider can take it. A
parameter is never silently dropped.

The defaults below are per wire format and host (the "dialect" of the OpenAI format); a
provider's config overrides any of them (`capabilities:` in configs/providers.yaml), e.g. a
Gemini 2.0 model that still takes penalties. Sources, checked 2026-11:
- OpenAI chat completions: every parameter; up to 4 stop sequences, top_logprobs <= 20.
- Anthropic Messages: stop_sequences, top_p, tools, tool_choice (auto/any/tool/none,
  disable_parallel_tool_use), metadata.user_id, extended thinking (budget >= 1024 and below
  max_tokens; not with a forced tool choice, nor with a temperature); no seed, penalties,
  logprobs or n. Claude 4.5+ takes temperature or top_p, not both. JSON answers go through a
  forced tool (works on every tool-capable Claude, takes any JSON Schema).
- Gemini generateContent: generationConfig stopSequences (<= 5), topP, seed,
  candidateCount (<= 8), responseMimeType + responseJsonSchema, thinkingConfig (2.5 Pro:
  128..32768 or -1, cannot be off); functionDeclarations + toolConfig. Gemini 2.5 answers
  400 "Penalty is not enabled" and "Logprobs is not enabled", and cannot combine function
  calling with a JSON response; it cannot be told to avoid parallel calls.
- Mistral: OpenAI-like but `random_seed`, tool_choice "any", no logprobs, no `user`.
- Together: integer `logprobs`; no parallel_tool_calls switch.
- Groq: no logprobs, n = 1, no penalties, no tools with JSON mode.
"""

from __future__ import annotations

import functools
import urllib.parse
import weakref

from pydantic import BaseModel, Field

from actors.clients.base import Completion, NamedToolChoice
from actors.config import Capabilities, ProviderSpec

#: The tool a JSON answer comes back through on Anthropic (a forced tool call).
ANTHROPIC_JSON_TOOL = "json_answer"

_ALL = dict(stop=True, top_p=True, temperature_and_top_p=True, seed=True, penalties=True,
            logprobs=True, max_top_logprobs=20, tools=True, parallel_tool_calls=True,
            json_object=True, json_schema=True, tools_with_json=True, thinking=False)
DEFAULTS: dict[str, Capabilities] = {
    "openai": Capabilities(**_ALL, max_stop=4, max_n=128),
    "mistral": Capabilities(**_ALL | dict(logprobs=False, max_top_logprobs=0), max_n=8),
    "together": Capabilities(**_ALL | dict(parallel_tool_calls=False, tools_with_json=False),
                             max_stop=8, max_n=8),
    "groq": Capabilities(**_ALL | dict(penalties=False, logprobs=False, max_top_logprobs=0,
                                       tools_with_json=False), max_stop=4, max_n=1),
    "anthropic": Capabilities(
        stop=True, top_p=True, temperature_and_top_p=False, seed=False, penalties=False,
        logprobs=False, max_top_logprobs=0, max_n=1, tools=True, parallel_tool_calls=True,
        json_object=True, json_schema=True, tools_with_json=True, thinking=True,
        min_thinking_budget=1024),
    "gemini": Capabilities(
        stop=True, max_stop=5, top_p=True, temperature_and_top_p=True, seed=True,
        penalties=False, logprobs=False, max_top_logprobs=20, max_n=8, tools=True,
        parallel_tool_calls=False, json_object=True, json_schema=True, tools_with_json=False,
        thinking=True, min_thinking_budget=128, max_thinking_budget=32768),
}
_HOSTS = {"api.mistral.ai": "mistral", "api.together.xyz": "together",
          "api.together.ai": "together", "api.groq.com": "groq"}


class Unsupported(BaseModel):
    """One parameter a provider cannot honour for a request."""

    param: str = Field(description="The request parameter, as the caller named it.")
    reason: str = Field(description="Why, for the trace or a 400.")


def dialect(spec: ProviderSpec) -> str:
    """The wire format, or for api: openai the host's variant (config, else the base URL)."""
    if spec.api != "openai":
        return spec.api
    if spec.dialect is not None:
        return spec.dialect
    return _host_dialect(spec.base_url)


@functools.lru_cache(maxsize=64)
def _host_dialect(base_url: str) -> str:
    return _HOSTS.get(urllib.parse.urlsplit(base_url).hostname or "", "openai")


#: Resolved capabilities per spec object. Keyed by identity, not by value: hashing a
#: ProviderSpec costs ~16 µs and this is asked for every candidate of every request.
_RESOLVED: dict[int, tuple[weakref.ref[ProviderSpec], Capabilities]] = {}


def capabilities(spec: ProviderSpec) -> Capabilities:
    """The dialect's defaults with the provider's overrides applied."""
    hit = _RESOLVED.get(id(spec))
    if hit is not None and hit[0]() is spec:
        return hit[1]
    base = DEFAULTS[dialect(spec)].model_dump()
    base.update(spec.capabilities.model_dump(exclude_none=True))
    caps = Capabilities.model_validate(base)
    key = id(spec)
    _RESOLVED[key] = (weakref.ref(spec, lambda _, k=key: _RESOLVED.pop(k, None)), caps)
    return caps


def thinking_budget(spec: ProviderSpec, completion: Completion, max_tokens: int) -> int | None:
    """The thinking budget to send, None for nothing (the vendor's default).

    A request's budget is sent as given. The provider's configured one is capped at half of
    max_tokens (thinking counts against it on Gemini and Claude), not below the model's floor;
    on Claude, whose budget must stay below max_tokens, a floor that does not fit turns
    thinking off.
    """
    if completion.thinking_budget is not None:
        return completion.thinking_budget
    budget = spec.thinking_budget
    if budget is None or budget <= 0:
        return budget
    floor = capabilities(spec).min_thinking_budget or 0
    budget = max(min(budget, max_tokens // 2), floor)
    if spec.api == "anthropic" and budget >= max_tokens:
        return 0
    return budget


def _no(what: str, spec: ProviderSpec) -> str:
    return f"{spec.name} ({dialect(spec)}) has no {what}"


def unsupported(spec: ProviderSpec, c: Completion) -> list[Unsupported]:
    """Every parameter of `c` that `spec` cannot honour, with the reason (empty: all fine)."""
    caps = capabilities(spec)
    out: list[Unsupported] = []

    def no(param: str, reason: str) -> None:
        out.append(Unsupported(param=param, reason=reason))

    if c.stop is not None:
        if not caps.stop:
            no("stop", _no("stop sequences", spec))
        elif caps.max_stop is not None and len(c.stop) > caps.max_stop:
            no("stop", f"{spec.name} takes at most {caps.max_stop} stop sequences")
    if c.top_p is not None:
        if not caps.top_p:
            no("top_p", _no("top_p", spec))
        elif c.temperature is not None and not caps.temperature_and_top_p:
            no("top_p", f"{spec.name} takes temperature or top_p, not both")
    if c.seed is not None and not caps.seed:
        no("seed", _no("seed", spec))
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(c, name) and not caps.penalties:
            no(name, _no("presence/frequency penalties", spec))
    if c.logprobs:
        if not caps.logprobs:
            no("logprobs", _no("logprobs", spec))
        elif (c.top_logprobs or 0) > (caps.max_top_logprobs or 0):
            no("top_logprobs", f"{spec.name} returns at most {caps.max_top_logprobs} "
               "alternatives per token")
    if c.n > 1 and c.n > (caps.max_n or 1):
        no("n", f"{spec.name} returns at most {caps.max_n} choices")
    history_calls = any(m.tool_calls or m.role == "tool" for m in c.messages)
    if (c.tools or history_calls) and not caps.tools:
        no("tools" if c.tools else "messages", _no("tool calling", spec))
    if c.parallel_tool_calls is False and not caps.parallel_tool_calls:
        no("parallel_tool_calls", f"{spec.name} cannot be told to avoid parallel tool calls")
    fmt = c.response_format
    if fmt is not None and fmt.is_json:
        if not (caps.json_schema if fmt.type == "json_schema" else caps.json_object):
            no("response_format", _no(f"{fmt.type} response format", spec))
        elif c.tools and c.tool_choice != "none" and not caps.tools_with_json:
            no("response_format", f"{spec.name} cannot combine tools with a JSON response")
    _thinking(spec, c, caps, no)
    if spec.api in ("anthropic", "gemini") and history_calls:
        for i, m in enumerate(c.messages):
            for j, call in enumerate(m.tool_calls or ()):
                if call.args() is None:
                    no("messages", f"messages[{i}].tool_calls[{j}].function.arguments is not "
                       f"a JSON object, which {spec.api} needs")
    if spec.api == "anthropic" and c.wants_json and any(
            t.function.name == ANTHROPIC_JSON_TOOL for t in c.tools or ()):
        no("tools", f"tool name {ANTHROPIC_JSON_TOOL!r} is reserved for JSON answers on "
           f"{spec.name}")
    return out


def _thinking(spec: ProviderSpec, c: Completion, caps: Capabilities, no) -> None:
    budget = c.thinking_budget
    if budget is not None and budget != 0:
        if not caps.thinking:
            no("thinking_budget", _no("thinking budget", spec))
            return
        if budget == -1 and spec.api == "anthropic":
            no("thinking_budget", f"{spec.name} needs an explicit thinking budget, not -1")
        elif budget > 0 and budget < (caps.min_thinking_budget or 0):
            no("thinking_budget", f"{spec.name} thinks at least {caps.min_thinking_budget} "
               "tokens")
        elif caps.max_thinking_budget is not None and budget > caps.max_thinking_budget:
            no("thinking_budget", f"{spec.name} thinks at most {caps.max_thinking_budget} "
               "tokens")
        elif spec.api == "anthropic" and budget >= (c.max_tokens or spec.max_output_tokens):
            no("thinking_budget", f"{spec.name} needs thinking_budget below max_tokens")
    elif budget == 0 and caps.thinking and (caps.min_thinking_budget or 0) > 0 \
            and spec.api == "gemini":
        no("thinking_budget", f"{spec.name} cannot turn thinking off (at least "
           f"{caps.min_thinking_budget} tokens, or -1)")
    if spec.api != "anthropic":
        return
    effective = thinking_budget(spec, c, c.max_tokens or spec.max_output_tokens)
    if not effective or effective < 0:
        return
    forced = c.tool_choice == "required" or isinstance(c.tool_choice, NamedToolChoice)
    if forced or (c.wants_json and c.tool_choice in (None, "auto", "none")):
        no("tool_choice" if forced else "response_format",
           f"{spec.name} cannot think while forced to call a tool (thinking_budget "
           f"{effective})")
    if c.temperature is not None:
        no("temperature", f"{spec.name} takes no temperature while thinking (thinking_budget "
           f"{effective})")
