"""The Ray shells: the actors (router, provider, tracker) wrapping the cores, how the
system is started and placed, and what the actors own at run time (state, record
shipping, metrics).

Module map:

    router_actor.py     `router`: the singleton actor wrapping `Router` with Ray handles
    provider.py         One provider's resilience stack, in the order a request meets it:
    provider_stream.py  A streamed attempt through one provider's resilience stack
    provider_links.py   The router's links to its provider actors: a Ray handle and a channel
                        pool for each, resolved on first use and re-resolved after a call found
                        the actor gone (Ray may have replaced it)
    tracker.py          The tracker: durable audit trail plus the performance and cost figures
                        derived from it
    system.py           Start or attach to the actor system: simulator, tracker, provider
                        actors, router
    placement.py        Where the stateful actors (tracker, router) run: on the head node by
                        default
    router_state.py     What one router keeps, opened together at start: in its instance's state
                        directory on one machine, in the cluster's PostgreSQL database with
                        `tracker.db_url`
    shipper.py          Records from the router to the tracker: journaled first, sent in
                        batches, kept until acknowledged, re-sent if not
    ray_calls.py        Calls to the router's and tracker's actors that raise the callee's own
                        error
    metrics.py          Ray metrics (dashboard / Prometheus) for providers and the router
    router_metrics.py   Request-level metrics of the router: who asked, which policy chose what,
                        what came of it, what it cost, and where the time went (in the router vs
                        at providers)
"""
