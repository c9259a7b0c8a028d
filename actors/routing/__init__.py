"""The router itself, plain async Python tested without Ray: the request and result
models, the decision and its attempts, streaming, the response cache's step, batch
routing, and market data turned into a request.

Module map:

    router.py           The router: policy over cached snapshots → provider call → fallback →
                        records
    router_spec.py      The `router:` config section (typed in `Config`, validated once at load)
    router_outcomes.py  What a routed request's attempts leave behind: the provider call with
                        its budget reservation, the reply (or the lost actor) turned into the
                        trace and attempt records, the budget settled at what was billed, and at
                        the end the request record and the result or the error
    router_stream.py    A routed request whose answer streams: the router's side of true
                        streaming
    route.py            The public request and result of one routed call, and its routing trace
    cache_route.py      How one routed request uses the response cache
                        (actors/stores/response_cache.py)
    batch_route.py      Routing for provider batch jobs (backtest `--batch`): the router
                        decides, the caller submits
    analysis.py         From market data to a routed request: the one place HTTP, notebooks and
                        backtests turn a `MarketContext` (or OHLCV bars) into a `RouteRequest`
                        with validated structured output
"""
