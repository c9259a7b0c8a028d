"""What runs in the caller's process (notebook, script, CLI): the client `connect()`
returns (actors/api.py), its reports and streams, waiting out a router restart,
structured output, and the `status` and dashboard commands.

Module map:

    client.py           `RouterClient`: the Python API's client, as `connect()` returns it
                        (actors/api.py)
    client_reports.py   The client's reports and state: status, costs, budgets, feedback,
                        shutdown
    route_streams.py    `llm.stream(...)`: a routed answer as it arrives, in the Python API
    lost_router.py      A caller whose router died holding its request: the outcome is unknown
    router_recovery.py  A caller's view of a router restart: requests sent while it restarts
                        wait for it
    outputs.py          Structured output in the Python API: what `output=` asks the router for,
                        and the model instance the caller gets back in `result.parsed`
    status.py           `llm-router status`: the health of the router's actors on a running
                        cluster, from the CLI
    dashboard.py        The Ray dashboard and Prometheus endpoints of the cluster the router
                        runs on
"""
