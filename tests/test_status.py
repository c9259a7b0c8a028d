"""`llm-router status` output from hand-made reports (the Ray side runs in test_placement
and test_dashboard)."""

from __future__ import annotations

from actors.caller.status import ActorRow, ProviderRow, StatusReport, main, render


def report(**kw) -> StatusReport:
    base = dict(address="10.0.0.5:6379", dashboard="http://10.0.0.5:8265", nodes=2,
                actors=[ActorRow(name="router", state="ALIVE", on_head=True, pid=10, restarts=0,
                                 answers=True),
                        ActorRow(name="tracker", state="ALIVE", on_head=True, pid=11,
                                 restarts=1, answers=True),
                        ActorRow(name="provider:claude", state="ALIVE", on_head=False,
                                 node_id="abcdef0123456789", pid=12, restarts=0, answers=True)],
                providers=[ProviderRow(name="claude", model="claude-sonnet-4-5", breaker="open",
                                       inflight=2, waiting=1, success_rate=0.4, p50_s=0.8,
                                       samples=30, simulated=False, reason="failure rate 0.6")],
                router_inflight=3, records={"requests": 1200, "attempts": 1500},
                budgets=[{"scope": "*", "window": "hourly", "limit_usd": 5.0, "spent_usd": 1.25,
                          "used": 0.25},
                         {"scope": "*", "window": "daily", "limit_usd": None, "spent_usd": 2.0,
                          "used": None}])
    base.update(kw)
    return StatusReport(**base)


def test_a_healthy_cluster_with_an_open_breaker():
    r = report()
    text = render(r)
    assert r.healthy and text.splitlines()[0].endswith("· healthy")
    assert "3 in flight" in text and "1,200 requests, 1,500 attempts recorded" in text
    assert "open (failure rate 0.6)" in text and "800 ms" in text
    assert "abcdef012345" in text and "head" in text
    assert "$1.2500" in text and "25 %" in text and "daily" not in text  # no limit, no row


def test_missing_tracker_or_an_actor_not_answering_is_not_healthy():
    r = report(actors=[a for a in report().actors if a.name != "tracker"])
    assert not r.healthy and "missing: tracker" in render(r)
    slow = report()
    slow.actors[2].answers, slow.actors[2].error = False, "no answer within 10 s"
    assert not slow.healthy and "NO (no answer within 10 s)" in render(slow)
    restarting = report()
    restarting.actors[0].state = "RESTARTING"
    assert not restarting.healthy
    unknown = report()  # a ray:// client: no actor table, the answers decide
    for a in unknown.actors:
        a.state = "?"
    assert unknown.healthy


def test_no_router_actors_says_how_to_start_them():
    text = render(report(actors=[], providers=[], budgets=[]))
    assert "no router actors in namespace 'llm-router'" in text and "llm-router serve" in text


def test_nothing_listening_is_exit_code_2_at_once(capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(f"127.0.0.1:{port}") == 2
    err = capsys.readouterr().err
    assert f"no Ray cluster at '127.0.0.1:{port}'" in err and "refused" in err.lower()
