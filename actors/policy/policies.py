"""Routing policies: pure functions `(candidates, need, settings) -> ranked scores`.

No I/O here. Exclusions (open breaker, context window, budget) are applied first by
`eligible`, the same for every policy; a policy only orders what is left. Adding a
policy is one function plus one entry in `POLICIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from actors.core.snapshot import Candidate, Need


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Tunables shared by the policies (from the `router:` config section)."""

    default_latency_s: float = 1.0  # latency-aware: assumed p50 before any sample


Policy = Callable[[list[Candidate], Need, PolicySettings], list[tuple[str, float]]]


def quality(c: Candidate, need: Need) -> float:
    """Expected outcome score of sending the request here: success × outcome score, the
    score being the posterior mean, or the exploring score (optimistic or a Thompson draw)
    when the ranking explores."""
    return c.success_rate * (c.draw if need.sampled else c.quality)


def expected_cost(c: Candidate, need: Need) -> float:
    """USD for this request's prompt plus the provider's expected output (learned, capped
    by max_tokens)."""
    if c.cost is not None:
        return c.cost
    out = need.expected_output_tokens if c.output_tokens is None else c.output_tokens
    if need.max_tokens is not None:
        out = min(out, need.max_tokens)
    snap = c.snapshot
    return (need.prompt_tokens * snap.input_cost_per_mtok + out * snap.output_cost_per_mtok) / 1e6


def accuracy_first(cands: list[Candidate], need: Need, s: PolicySettings) -> list[tuple[str, float]]:
    """Highest expected outcome score; ties (e.g. no feedback anywhere yet) go to the
    answers' own confidence, then to the cheaper provider."""
    keyed = [(quality(c, need), c.confidence or 0.0, -expected_cost(c, need), c.name)
             for c in cands]
    keyed.sort(reverse=True)
    return [(name, q) for q, _, _, name in keyed]


def cost_aware(cands: list[Candidate], need: Need, s: PolicySettings) -> list[tuple[str, float]]:
    """Highest expected value of the answer minus its expected cost, for this request:
    `value_usd × expected score − expected cost` (a long prompt makes a pricey provider's
    premium larger). Without a value, the cheapest first."""
    v = need.value_usd or 0.0
    scored = [(v * quality(c, need) - expected_cost(c, need), c.name) for c in cands]
    scored.sort(reverse=True)
    return [(name, net) for net, name in scored]


def expected_latency(c: Candidate, need: Need, s: PolicySettings) -> float:
    """Recent p50, or longer when the requests ahead of this one at the provider need more
    than p50 to drain at its rate (rpm, or max_concurrency per p50).

    A burst sent to the provider with the best p50 would otherwise queue at its rate limit
    while faster-draining providers sat idle."""
    p50 = c.p50_s if c.p50_s is not None else s.default_latency_s
    snap = c.snapshot
    ahead = max(need.ahead.get(c.name, 0), snap.inflight + snap.waiting)
    if ahead == 0:
        return p50
    rate = max(snap.max_concurrency, 1) / max(p50, 1e-3)  # requests per second it can finish
    if snap.rpm:
        rate = min(rate, snap.rpm / 60.0)
    return max(p50, (ahead + 1) / rate)


def latency_aware(cands: list[Candidate], need: Need, s: PolicySettings) -> list[tuple[str, float]]:
    """Lowest expected latency (recent p50, plus queueing behind requests already there),
    p95 breaking ties; unknown latency gets a neutral prior."""
    def key(c: Candidate) -> tuple[float, float]:
        p50 = c.p50_s if c.p50_s is not None else s.default_latency_s
        p95 = c.p95_s if c.p95_s is not None else p50
        return (expected_latency(c, need, s), p95)

    return [(c.name, key(c)[0]) for c in sorted(cands, key=key)]


POLICIES: dict[str, Policy] = {
    "accuracy-first": accuracy_first,
    "cost-aware": cost_aware,
    "latency-aware": latency_aware,
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}") from None


def eligible(
    cands: Iterable[Candidate],
    need: Need,
    now: float,
    blocked: Mapping[str, str] | None = None,
) -> tuple[list[Candidate], dict[str, str]]:
    """Split candidates into usable ones and `{name: reason}` for the excluded."""
    ok: list[Candidate] = []
    excluded: dict[str, str] = {}
    for c in cands:
        snap = c.snapshot
        if blocked and c.name in blocked:
            excluded[c.name] = blocked[c.name]
        elif snap.state == "open" and (snap.open_until is None or snap.open_until > now):
            excluded[c.name] = "breaker_open"
        elif need.prompt_tokens > snap.max_input_tokens:
            excluded[c.name] = (
                f"context_too_long: ~{need.prompt_tokens} prompt tokens > {snap.max_input_tokens}"
            )
        elif need.max_tokens is not None and need.max_tokens > snap.max_output_tokens:
            excluded[c.name] = f"max_tokens {need.max_tokens} > limit {snap.max_output_tokens}"
        else:
            ok.append(c)
    return ok, excluded


def rank(
    policy: str,
    cands: list[Candidate],
    need: Need,
    settings: PolicySettings,
    now: float,
    blocked: Mapping[str, str] | None = None,
) -> tuple[list[tuple[str, float]], dict[str, str]]:
    """Exclusions then the policy: `(ranked [(name, score)], excluded {name: reason})`."""
    usable, excluded = eligible(cands, need, now, blocked)
    return get_policy(policy)(usable, need, settings), excluded
