"""The public request and result of one routed call, and its routing trace."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from actors.clients.base import PARAMS, Choice, Completion, Message, TokenLogprob, ToolCall
from actors.core.contexts import check_context
from actors.core.errors import ErrorClass, ProviderError
from actors.rpc.messages import OutputKind
from actors.stores.idempotency import MAX_ID_LENGTH, RequestId
from actors.stores.response_cache import CacheMode


class ChoiceOptions(BaseModel):
    """How the router may choose for this request: the same fields in the Python API, the
    native HTTP bodies and the OpenAI-compatible body (README: Policies)."""

    quality_target: float | None = Field(
        None, gt=0, le=1, description="cost-aware: share of the best single provider's outcome "
                                      "score to hold over the stream (router default 0.95).")
    outcome_value_usd: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="cost-aware: USD a right answer is worth (instead of a quality target).")
    explore: bool = Field(True, strict=True,
                          description="False: the greedy choice, never an exploratory one.")


class RouteRequest(ChoiceOptions, Completion):
    """What a caller (HTTP, notebook, backtest) asks the router for.

    The completion parameters (top_p, stop, seed, penalties, logprobs, n, tools,
    tool_choice, response_format, thinking_budget...) are Completion's own fields with its
    checks: a request that validates here is a valid Completion (`completion()`). A
    provider that cannot honour one is excluded for the request (actors/clients/capabilities.py).
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1, description="Chat messages, system first if any.")
    policy: str | None = Field(None, description="Policy name; None = the router's default.")
    provider: str | None = Field(None, description="Pin one provider (fallbacks still apply if given).")
    fallbacks: list[str] | None = Field(None, description="Explicit provider order to try.")
    context: dict[str, str] = Field(default_factory=dict, description="e.g. task, regime, timeframe.")
    max_tokens: int | None = Field(None, gt=0, description="Output cap for the answer.")
    temperature: float | None = Field(None, ge=0, le=2)
    timeout: float | None = Field(None, gt=0, le=3600, description="Seconds until the deadline.")
    output: OutputKind = Field("text", description="Structured output to validate.")
    request_id: RequestId | None = Field(
        None, max_length=MAX_ID_LENGTH, description="Idempotency key and audit id (see "
        "actors/stores/idempotency.py): the same id with the same request replays its outcome.")
    priority: Literal["live", "batch"] = Field(
        "live", description="Live traffic goes ahead of batch (backtest) work at rate limits.")
    cache: CacheMode = Field(
        "off", description="Response cache (actors/stores/response_cache.py): off (default), read, "
        "write, both, or only (read; a miss fails with cache_miss, no provider is called).")
    user: str | None = Field(
        None, min_length=1, max_length=128, description="End user, desk or strategy (OpenAI's "
        "`user`): on the audit rows, costs grouped by it (`costs(group_by='user')`), and a "
        "metrics label only when allow-listed or among the busiest (`metrics:` section).")

    # Not an input (no body, keyword or constructor sets it): it turns the idempotency
    # lookup off, so a chosen id carrying it would be answered, and billed, twice. Pickled
    # with the request to the router.
    _fresh_id: bool = PrivateAttr(False)

    @property
    def fresh_id(self) -> bool:
        """`request_id` was made up by the client for this one call (`with_made_up_id`):
        no store can hold it, so the router does not look it up (an id in flight is still
        a conflict)."""
        return self._fresh_id

    def with_made_up_id(self) -> RouteRequest:
        """A copy with a new id of its own, marked as made up."""
        made = self.model_copy(update={"request_id": uuid.uuid4().hex})
        made._fresh_id = True
        return made

    @property
    def new_id(self) -> bool:
        """Whether the request's id is new (none given, or made up by the client): an
        idempotency store cannot hold it, so there is nothing to look up."""
        return self.request_id is None or self.fresh_id

    @field_validator("context", mode="before")
    @classmethod
    def _stringify(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return check_context(v)
        return v

    def completion(self) -> Completion:
        """The provider-neutral payload, already validated by this model's own checks.

        Built the way `model_construct` does, without its per-field work: this is on every
        request's path (a tenth of the cost: BENCHMARKS.md, "Costs quoted in the code")."""
        c = Completion.__new__(Completion)
        values = self.__dict__
        object.__setattr__(c, "__dict__", {f: values[f] for f in _COMPLETION_FIELDS})
        object.__setattr__(c, "__pydantic_fields_set__",
                           self.__pydantic_fields_set__ & _COMPLETION_FIELDS_SET)
        object.__setattr__(c, "__pydantic_extra__", None)
        object.__setattr__(c, "__pydantic_private__", None)
        return c

    @property
    def has_params(self) -> bool:
        """A completion parameter beyond messages, max_tokens and temperature was given."""
        return not _PARAMS_SET.isdisjoint(self.__pydantic_fields_set__)


class Usage(BaseModel):
    """Token detail beyond input/output, as the answering attempt's provider billed it."""

    cached_input_tokens: int = Field(0, description="Prompt tokens read from the cache.")
    cache_write_tokens: int = Field(0, description="Prompt tokens written to the cache.")
    reasoning_tokens: int = Field(0, description="Thinking tokens (counted in output).")
    estimated: bool = Field(False, description="Usage estimated (a stream cut before its "
                            "usage event).")

    @classmethod
    def of(cls, r: Any) -> Usage | None:
        """The token detail of an answer (a clients.base.Result); None when there is none
        (the common case: a result crosses two actor boundaries, keep it small)."""
        if not (r.cached_input_tokens or r.cache_write_tokens or r.reasoning_tokens
                or r.usage_estimated):
            return None
        return cls(cached_input_tokens=r.cached_input_tokens,
                   cache_write_tokens=r.cache_write_tokens,
                   reasoning_tokens=r.reasoning_tokens, estimated=r.usage_estimated)


_COMPLETION_FIELDS = tuple(Completion.model_fields)
_COMPLETION_FIELDS_SET = frozenset(_COMPLETION_FIELDS)
_PARAMS_SET = frozenset(PARAMS)


class TraceAttempt(BaseModel):
    provider: str
    attempt: int
    ok: bool
    error_class: str | None = None
    error: str | None = None
    status: int | None = None
    latency_s: float = 0.0


class RoutingTrace(BaseModel):
    """How the router decided and what happened, attached to every result and error."""

    request_id: str
    policy: str
    context: dict[str, str] = Field(default_factory=dict)
    explored: bool = Field(False, description="The choice was exploratory (actors/policy/explore.py).")
    quality_target: float | None = Field(None, description="cost-aware: the target it held.")
    value_usd: float | None = Field(None, description="cost-aware: USD per unit outcome score.")
    candidates: list[dict[str, Any]] = Field(default_factory=list, description="[{provider, score}]")
    excluded: dict[str, str] = Field(default_factory=dict, description="provider → reason")
    chosen: str | None = None
    attempts: list[TraceAttempt] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    simulated: bool = Field(False, description="Answered (or tried) by the built-in simulator: "
                            "made-up answers, not model output.")
    replayed: bool = Field(False, description="The stored outcome of an earlier request with "
                           "this id: no provider was called, nothing was paid.")
    cached: bool = Field(False, description="Answered from the response cache: no provider "
                         "was called, nothing was paid.")
    saved_usd: float = Field(0.0, description="A cached answer: what it cost when it was paid.")


class RouteResult(BaseModel):
    request_id: str
    provider: str
    model: str
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    parsed: Any = Field(None, description="Validated structured output: the JSON value over "
                        "the wire; the Python API gives the model instance (TradeSignal, "
                        "RiskAssessment, or the class passed as `output=`).")
    tool_calls: list[ToolCall] | None = Field(None, description="Tools the model called.")
    choices: list[Choice] | None = Field(None, description="Every choice when n > 1.")
    logprobs: list[TokenLogprob] | None = Field(None, description="Choice 0's token logprobs.")
    usage: Usage | None = Field(None, description="Token detail of the answering attempt: "
                                "cached, cache-write, reasoning; estimated or not (None: none).")
    trace: RoutingTrace

    @property
    def simulated(self) -> bool:
        """Made up by the built-in simulator (see `trace.simulated`)."""
        return self.trace.simulated

    @property
    def replayed(self) -> bool:
        return self.trace.replayed

    @property
    def cached(self) -> bool:
        """Answered from the response cache (see `trace.cached`, `trace.saved_usd`)."""
        return self.trace.cached


class RoutingError(ProviderError):
    """A request that got no answer; carries the trace with every provider's reason, and
    for a bad request the parameter at fault (`param`) when one is known."""

    def __init__(self, error_class: ErrorClass | str, message: str, trace: RoutingTrace,
                 param: str | None = None) -> None:
        super().__init__(error_class, message)
        self.trace = trace
        self.param = param

    def __reduce__(self):
        return (RoutingError, (self.error_class.value, self.message, self.trace, self.param))
