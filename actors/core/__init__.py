"""The plain cores: pure Python, no Ray. Clocks come in as `now` and effects are
injected, so each is tested with plain asserts (STYLE.md: plain core, thin actor).

Module map:

    breaker.py           Circuit breaker for one provider: stop sending attempts to a provider
                         that is failing
    window.py            Rolling statistics over a provider's recent attempts, the numbers a
                         snapshot is built from
    limiter.py           Client-side rate limits for one provider: a request waits for capacity
                         rather than earning a 429 (which costs a round trip, a retry and
                         breaker pressure)
    budget.py            Spend limits: reserve a request's worst-case cost before dispatch,
                         settle to the real cost
    budget_overrides.py  Run-time budget changes: merged into the configured budgets, kept, and
                         always explained
    budget_seeding.py    A (re)started router's budgets start from the spend already recorded,
                         not from zero
    cost.py              Prices: the one place token counts become dollars (prices are USD per
                         1M tokens)
    errors.py            Error classification: every failure becomes one `ProviderError` with an
                         `ErrorClass`
    retry.py             Retries, built on tenacity: of one request on one provider, and of one
                         internal hop
    snapshot.py          A provider's state as the router sees it, and the per-request view
                         policies rank
    contexts.py          Request contexts: what a caller may send, and the one definition of a
                         context key
    params.py            A request's completion parameters as the router sees them: which
                         providers can honour them, and what they add to the prompt and to the
                         worst case a request may cost
    tokens.py            Cheap token estimates, used to refuse prompts that cannot fit before
                         paying for an attempt, and to estimate what a stream cut before its
                         usage event was billed
    keys.py              API keys: the one place a provider's key is read, and what follows from
                         it
    performance.py       Per-provider and per-(provider, context) performance, aggregated from
                         records in memory
    privacy.py           Prompt and answer text at rest: kept, replaced by a keyed hash, or
                         dropped
    records.py           Records sent to the tracker: one per attempt and one per request
    feedback.py          Realized outcomes sent to the router in batches: one actor call for
                         many scores
"""
