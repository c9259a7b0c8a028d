"""A request's completion parameters as the router sees them: which providers can honour
them, and what they add to the prompt and to the worst case a request may cost.

A provider that cannot honour a parameter is excluded for the request (the trace says why);
when none of the providers the request may use can, the request is refused as a bad request
naming the parameter (`UnsupportedParameter`, an OpenAI-shaped 400 over HTTP). Nothing is
ever dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from actors.clients.base import Completion
from actors.clients.capabilities import Unsupported, unsupported
from actors.config import ProviderSpec
from actors.core.errors import ErrorClass, ProviderError
from actors.core.tokens import estimate_messages, estimate_tools
from actors.routing.route import RouteRequest


class UnsupportedParameter(ProviderError):
    """No provider the request may use honours one of its parameters (`param` names it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(ErrorClass.BAD_REQUEST, message)
        self.param = param


def prompt_tokens(completion: Completion) -> int:
    """Estimated prompt: the messages plus the tool definitions."""
    return estimate_messages(completion.messages) + estimate_tools(completion.tools)


def reason(found: list[Unsupported]) -> str:
    """The trace's exclusion reason for one provider."""
    return "; ".join(f"unsupported {u.param}: {u.reason}" for u in found)


def exclusions(providers: Mapping[str, ProviderSpec],
               completion: Completion) -> dict[str, list[Unsupported]]:
    """Provider → what it cannot honour, for the providers that cannot honour everything."""
    out: dict[str, list[Unsupported]] = {}
    for name, spec in providers.items():
        found = unsupported(spec, completion)
        if found:
            out[name] = found
    return out


def refuse_if_nobody(excluded: Mapping[str, list[Unsupported]], usable: Iterable[str]) -> None:
    """Raise UnsupportedParameter when every provider the request may use (`usable`: the
    ones it named, else every enabled one) cannot honour some parameter of it."""
    names = list(usable)
    if not names or not all(n in excluded for n in names):
        return
    counts = Counter(u.param for n in names for u in excluded[n])
    param = counts.most_common(1)[0][0]
    detail = "; ".join(f"{n}: {u.reason}" for n in names for u in excluded[n]
                       if u.param == param) or "; ".join(
        f"{n}: {reason(excluded[n])}" for n in names)
    which = names[0] if len(names) == 1 else "any provider this request may use"
    raise UnsupportedParameter(param, f"parameter {param!r} is not supported by {which} — "
                               f"{detail}")


def named_only(req: RouteRequest, excluded: dict[str, str]) -> dict[str, str]:
    """The exclusions that decide a request's failure: of the providers it named, if any
    (a pinned request is not "over budget" because another provider cannot take a seed)."""
    wanted = {n for n in [req.provider, *(req.fallbacks or [])] if n}
    return {n: r for n, r in excluded.items() if n in wanted} if wanted else dict(excluded)
