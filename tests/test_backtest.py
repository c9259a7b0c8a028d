"""Backtests: plain cores (outcomes, feedback gate, fan-out, store, recovery, inputs) without
Ray, then small runs through the real router and simulator on the session's Ray instance —
results complete, a killed run resumed without paying twice, feedback, report, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from actors.backtest import BacktestError, BacktestSpec, SeriesSpec, prepare, run_backtest
from actors.backtest.fanout import RateShare, window_size
from actors.backtest.feedback import FeedbackGate
from actors.backtest.outcome import adverse_excursion, forward_returns, signal_score, stop_score
from actors.backtest.progress import Progress
from actors.backtest.recover import classify, generation, lookup
from actors.backtest.store import RunStore, Sent
from actors.config import parse_config
from prompts import DataError, RegimeRules, load_sample
from tests.conftest import make_config

# -- outcomes ----------------------------------------------------------------------------


def test_forward_returns_and_adverse_excursion():
    close = np.array([100.0, 110.0, 99.0, 121.0])
    low = np.array([99.0, 105.0, 90.0, 120.0])
    fwd = forward_returns(close, 2)
    assert fwd[0] == pytest.approx(-0.01) and fwd[1] == pytest.approx(0.1)
    assert np.isnan(fwd[2:]).all()
    adv = adverse_excursion(close, low, 2)
    assert adv[0] == pytest.approx(90 / 100 - 1) and adv[1] == pytest.approx(90 / 110 - 1)
    assert np.isnan(adv[2:]).all()


def test_scores_long_short_flat_and_stop():
    assert signal_score("long", 0.02, 0.01) == 1.0 and signal_score("long", -0.02, 0.01) == 0.0
    assert signal_score("short", -0.02, 0.01) == 1.0 and signal_score("short", 0.0, 0.01) == 0.0
    assert signal_score("flat", 0.005, 0.01) == 1.0 and signal_score("flat", -0.02, 0.01) == 0.0
    assert signal_score("long", float("nan"), 0.01) is None
    assert stop_score(5.0, 100.0, -0.04) == 1.0 and stop_score(5.0, 100.0, -0.06) == 0.0


def test_feedback_gate_releases_only_after_the_horizon_was_dispatched():
    g = FeedbackGate(horizon=3)
    assert g.advance("SPX 1d", 10) == []
    assert g.hold("SPX 1d", 10, "a", 1.0) == []  # known at bar 13
    assert g.hold("SPX 1d", 5, "b", 0.0) == [("b", 0.0)]  # 8 <= 10: already reached
    assert g.advance("SPX 1d", 12) == [] and g.advance("NDX 1d", 20) == []
    assert g.advance("SPX 1d", 13) == [("a", 1.0)]
    g.hold("SPX 1d", 40, "c", 1.0)
    assert g.held == 1 and g.drain() == [("c", 1.0)] and g.held == 0


# -- fan-out -----------------------------------------------------------------------------


def _config(**rpm: int):
    data = make_config(Path("/tmp"))
    for p in data["providers"]:
        p["rpm"] = rpm.get(p["name"].replace("-", "_"), p["rpm"])
    return parse_config(data)


def test_rate_share_is_proportional_to_rpm_and_avoids_a_provider_falling_behind():
    cfg = _config(claude=600, gemini=300, gpt_4_turbo=300, mixtral=150, llama=150)
    rs = RateShare(cfg)
    picks = [rs.next() for _ in range(1500)]
    counts = pd.Series([p for p, _ in picks]).value_counts()
    assert counts["claude"] == 600 and counts["gemini"] == 300 and counts["mixtral"] == 150
    provider, fallbacks = picks[0]
    assert provider == "claude" and fallbacks[0] in ("gemini", "gpt-4-turbo")
    assert len(fallbacks) == 4 and "claude" not in fallbacks
    for p, _ in picks:  # all answered, except 100 of gemini's (it fell behind)
        if p != "gemini" or rs.outstanding["gemini"] > 100:
            rs.done(p)
    later = pd.Series([rs.next()[0] for _ in range(1400)]).value_counts()
    assert later["gemini"] == 300 - 100 and later["claude"] == 600
    rs.set_down({"claude"})  # breaker open: its share goes elsewhere
    assert "claude" not in {rs.next()[0] for _ in range(100)}
    rs.set_down(set(cfg.names))  # all down: keep sharing (the router decides what fails)
    assert "claude" in {rs.next()[0] for _ in range(100)}


def test_window_follows_rate_times_latency_capped_by_concurrency():
    cfg = _config(claude=60, gemini=60, gpt_4_turbo=60, mixtral=60, llama=60)
    assert window_size(cfg, 2.0) == 5 * 3  # 1/s × 2 s × 1.25 → 3 each
    big = _config(claude=60000, gemini=60000, gpt_4_turbo=60000, mixtral=60000, llama=60000)
    assert window_size(big, 2.0) == sum(p.max_concurrency for p in big.providers)


def test_progress_line_shows_rate_eta_spend_and_failures():
    now = [0.0]
    out = io.StringIO()
    p = Progress(100, already=10, stream=out, every_s=1e9, clock=lambda: now[0])
    for i in range(10):
        now[0] = 1.0 + i * 0.5
        p.update(i != 3, 0.01, "rate_limited" if i == 3 else None)
    line = p.line(now[0])
    assert "[20/100" in line and "2.0 req/s" in line and "ETA 40s" in line
    assert "$0.1000" in line and "rate_limited=1" in line
    assert out.getvalue().count("\n") == 1  # not a TTY: plain lines, throttled


# -- store and recovery ------------------------------------------------------------------


def test_store_parts_are_atomic_and_journal_ignores_a_torn_line(tmp_path):
    st = RunStore(tmp_path, "r1")
    assert st.claim({"a": 1}) is False and st.claim({"a": 1}) is True
    with pytest.raises(BacktestError, match=r"belongs to different parameters[\s\S]*a: 1 → 2"):
        RunStore(tmp_path, "r1").claim({"a": 2})
    st.add({"key": "k1", "ok": True, "cost_usd": 0.1})
    st.flush()
    (st.parts / "part-00001.parquet.tmp").write_bytes(b"half a file")
    st.dispatched("k1", "rid-1", "r")
    st.dispatched("k2", "rid-2", "r")
    st.feedback_sent("rid-1")
    with open(st.dir / "journal.log", "a") as fh:
        fh.write("D\tk3\trid-")  # killed mid-write
    again = RunStore(tmp_path, "r1")
    df = again.load()
    assert list(df["key"]) == ["k1"]
    sent, fed = again.read_journal()
    assert {k: [s.request_id for s in v] for k, v in sent.items()} == {"k1": ["rid-1"],
                                                                       "k2": ["rid-2"]}
    assert sent["k1"][0].router == "r" and fed == {"rid-1"}
    again.add({"key": "k2", "ok": True})
    assert again.flush().name == "part-00001.parquet"
    again.dispatched("k4", "rid-4", "r")  # the resumed run's first line survives the torn one
    again.close()
    sent, _ = RunStore(tmp_path, "r1").read_journal()
    assert sent["k4"][0].request_id == "rid-4" and "k3" not in sent


def test_classify_prior_requests_from_audit_rows():
    assert generation("bt:x:y") == 1 and generation("bt:x:y~3") == 3
    unknown = classify("bt:r:k", None)
    assert not unknown.final and unknown.next_gen == 2
    answered = classify("bt:r:k", [
        {"kind": "attempt", "provider": "claude", "ok": False, "error_class": "server"},
        {"kind": "attempt", "provider": "claude", "ok": True, "response": "{}", "latency_s": 0.2},
        {"kind": "request", "ok": True, "provider": "claude", "cost_usd": 0.01}])
    assert answered.final and answered.ok and answered.text == "{}"
    assert answered.tried == "claude:server,claude:ok"
    free_fail = classify("bt:r:k~2", [{"kind": "request", "ok": False, "cost_usd": 0.0,
                                       "error_class": "no_provider"}])
    assert not free_fail.final and free_fail.next_gen == 3
    paid_fail = classify("bt:r:k", [{"kind": "request", "ok": False, "cost_usd": 0.02,
                                     "error_class": "no_provider"}])
    assert paid_fail.final and not paid_fail.ok


class _Audits:
    """A client whose audit answers come from a script (None = unknown id)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []
        self.handles = SimpleNamespace(router=SimpleNamespace(
            _actor_id=SimpleNamespace(hex=lambda: "R")))

    def audit(self, rid):
        self.calls.append(rid)
        seq = self.answers[rid]
        rows = seq.pop(0) if len(seq) > 1 else seq[0]
        if rows is None:
            raise KeyError(rid)
        return rows


def test_resume_waits_for_requests_that_may_still_run_in_the_same_router():
    now = 1000.0
    ok = [{"kind": "attempt", "provider": "llama", "ok": True, "response": "{}"},
          {"kind": "request", "ok": True, "provider": "llama", "cost_usd": 0.01}]
    client = _Audits({"a": [None, None, ok], "b": [None], "c": [None]})
    pending = {"k1": [Sent("a", now - 1, "R")],  # same router, within its deadline: wait
               "k2": [Sent("b", now - 1, "OLD")],  # a router that is gone: lost, send again
               "k3": [Sent("c", now - 400, "R")]}  # deadline long past: lost
    out = lookup(client, pending, timeout_s=300, clock=lambda: now, sleep=lambda s: None)
    assert out["k1"].final and out["k1"].ok and client.calls.count("a") == 3
    assert not out["k2"].final and out["k2"].next_gen == 2 and client.calls.count("b") == 1
    assert not out["k3"].final and client.calls.count("c") == 1


def test_resume_does_not_wait_for_requests_the_router_is_not_working_on():
    now = 1000.0
    ok = [{"kind": "attempt", "provider": "llama", "ok": True, "response": "{}"},
          {"kind": "request", "ok": True, "provider": "llama", "cost_usd": 0.01}]
    client = _Audits({"a": [None, ok], "b": [None], "c": [None, None, ok]})
    client.active = lambda ids: {"a"} & set(ids)
    pending = {"k1": [Sent("a", now - 30, "R")],  # still being routed: wait for it
               "k2": [Sent("b", now - 30, "R")],  # same router, not there: never arrived
               "k3": [Sent("c", now - 2, "R")]}  # just sent: may still be on its way
    out = lookup(client, pending, timeout_s=300, clock=lambda: now, sleep=lambda s: None)
    assert out["k1"].final and out["k1"].ok and client.calls.count("a") == 2
    assert not out["k2"].final and out["k2"].next_gen == 2 and client.calls.count("b") == 1
    assert out["k3"].final and client.calls.count("c") == 3


# -- bad input: refused before any spend --------------------------------------------------


@pytest.fixture(scope="module")
def bars_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    df = load_sample("sp500").iloc[:400].reset_index()
    df.to_csv(d / "good.csv", index=False)
    df.drop(columns=["volume"]).to_csv(d / "nocol.csv", index=False)
    nan = df.copy()
    nan.loc[300, "close"] = np.nan
    nan.to_csv(d / "nan.csv", index=False)
    df.iloc[::-1].to_csv(d / "unsorted.csv", index=False)
    two = pd.concat([df.assign(symbol="AAA"), df.assign(symbol="BBB")])
    two.to_parquet(d / "two.parquet")
    return d


@pytest.mark.parametrize("series,match", [
    ({"source": "nocol.csv"}, r"missing column\(s\) \['volume'\]"),
    ({"source": "nan.csv"}, r"column 'close' has 1 NaN"),
    ({"source": "unsorted.csv"}, "timestamps not sorted ascending"),
    ({"source": "two.parquet", "symbol": "CCC"}, "unknown symbol 'CCC'.*AAA, BBB"),
    ({"source": "sample:sp500", "symbol": "NDX"}, "unknown symbol 'NDX'.*holds SPX"),
    ({"source": "good.csv", "timeframe": "1h"}, "does not match the data.*did you mean '1d'"),
    ({"source": "missing.csv"}, "no such file"),
])
def test_bad_input_is_a_clear_error(bars_csv, series, match):
    if not series["source"].startswith("sample:"):
        series = {**series, "source": str(bars_csv / series["source"])}
    with pytest.raises(DataError, match=match):
        prepare(BacktestSpec(series=[SeriesSpec(**series)]))


def test_bad_parameters_are_clear_errors(bars_csv):
    with pytest.raises(ValueError, match="unknown timeframe '2h'"):
        SeriesSpec(timeframe="2h")
    with pytest.raises(ValueError, match="unknown policy 'cheapest'"):
        BacktestSpec(policies=["cheapest"])
    with pytest.raises(ValueError, match="unknown task 'forecast'"):
        BacktestSpec(tasks=["forecast"])
    with pytest.raises(DataError, match="no bars to analyse"):
        prepare(BacktestSpec(series=[SeriesSpec(source=str(bars_csv / "good.csv"))],
                             start="2030-01-01"))
    two = prepare(BacktestSpec(series=[SeriesSpec(source=str(bars_csv / "two.parquet"),
                                                  symbol="BBB")], limit=50))
    assert two.series[0].symbol == "BBB" and two.total == 50


def test_cli_refuses_bad_input_before_starting_ray(bars_csv, tmp_path, capsys):
    import ray

    from actors.cli import main

    started = ray.is_initialized()
    rc = main(["backtest", "--data", str(bars_csv / "nan.csv"), "--runs-dir", str(tmp_path)])
    assert rc == 2 and "has 1 NaN" in capsys.readouterr().err
    rc = main(["backtest", "--data", "sample:sp500", "--policy", "cheapest"])
    assert rc == 2 and "unknown policy" in capsys.readouterr().err
    assert ray.is_initialized() == started


# -- through the router --------------------------------------------------------------------

POLICIES = ["accuracy-first", "cost-aware"]


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    from actors.api import connect

    client = connect(config=make_config(tmp_path_factory.mktemp("backtest")))
    yield client
    client.shutdown(stop_ray=False)


def _spec(tmp_path, **kw):
    base = {"run_id": "t1", "series": [SeriesSpec(source="sample:sp500")], "start": "2008-06-01",
            "limit": 30, "policies": POLICIES, "runs_dir": tmp_path, "inflight": 6,
            "part_rows": 8}
    return BacktestSpec(**{**base, **kw})


def _requests(llm) -> int:
    llm.flush()
    costs = llm.costs("hour")
    return int(costs["requests"].sum()) if len(costs) else 0


class _Killed(Exception):
    """The driver's process ended here, as by SIGKILL: nothing after it runs."""


def _die_after(monkeypatch, rows: int) -> None:
    """From outside the runner: the process "dies" as its `rows`-th result is stored —
    no flush, no close, no feedback drained (the runner only sees an exception it does
    not handle, so it cleans nothing up)."""
    added = [0]
    add = RunStore.add

    def dying_add(self, row):
        if added[0] >= rows - 1:
            raise _Killed()
        added[0] += 1
        add(self, row)

    monkeypatch.setattr(RunStore, "add", dying_add)


def test_killed_run_resumes_without_losing_duplicating_or_paying_twice(llm, tmp_path,
                                                                        monkeypatch):
    spec = _spec(tmp_path)
    before = _requests(llm)
    with monkeypatch.context() as m:
        _die_after(m, 25)
        with pytest.raises(_Killed):  # the 25th result gone with its process
            run_backtest(llm, spec, progress=False)
    stored = RunStore(tmp_path, "t1").load()
    assert 8 <= len(stored) < 60  # some parts were written before the "kill"
    out = run_backtest(llm, spec, progress=False)
    assert out.complete and out.total == 60 and out.stopped is None
    df = out.results
    assert df["key"].is_unique and len(df) == 60 and df["ok"].all()
    assert set(df["policy"]) == set(POLICIES) and df["bar"].nunique() == 30
    assert out.skipped == len(stored)
    assert out.recovered >= 1  # answered while in flight at the kill: rebuilt, not re-sent
    assert out.skipped + out.recovered + out.sent == 60
    # every (provider, bar) paid exactly once: two policies choosing the same provider for a
    # bar share its answer through the response cache
    paid = len(df[["provider", "ts"]].drop_duplicates())
    assert _requests(llm) - before == paid
    assert df["request_id"].str.startswith("bt:t1:").all()
    # re-sent only when it costs nothing: an answer from the response cache (its audit row
    # holds no text to rebuild it from), asked again under a new id and answered from there
    assert not df.loc[~df["cached"].astype(bool), "request_id"].str.contains("~").any()
    assert df["direction"].isin(["long", "short", "flat"]).all()
    assert df["score"].notna().all() and df["score"].isin([0.0, 1.0]).all()

    row = df.iloc[0]
    audit = llm.audit(row["request_id"])
    assert audit[-1]["kind"] == "feedback" and audit[-1]["score"] == row["score"]
    req = next(r for r in audit if r["kind"] == "request")
    assert req["policy"] == row["policy"] and "t1" in str(req["context"])

    files = out.report.files
    for name in ("report.md", "report.html", "cost_over_time", "provider_mix", "hit_rate"):
        assert files[name].exists() and files[name].stat().st_size > 0, name
    assert files["cost_over_time"].suffix == ".png"
    md = files["report.md"].read_text()
    assert "## Providers" in md and "## Policies" in md and "hit_rate" in md
    providers = out.report.tables["providers"]
    assert set(llm.config.names) <= set(providers.index)
    assert providers["requests"].sum() == 60
    assert set(out.report.tables["policies"].index) == set(POLICIES)
    assert "== Providers" in out.text

    again = run_backtest(llm, spec, progress=False, write_report=False)  # nothing left to do
    assert again.sent == 0 and again.skipped == 60 and _requests(llm) - before == paid


def test_same_run_id_with_other_parameters_is_refused_before_any_spend(llm, tmp_path):
    run_backtest(llm, _spec(tmp_path, limit=5, policies=["cost-aware"]), progress=False,
                 write_report=False)
    before = _requests(llm)
    with pytest.raises(BacktestError, match=r"belongs to different parameters[\s\S]*horizon"):
        run_backtest(llm, _spec(tmp_path, limit=5, policies=["cost-aware"], horizon=10))
    assert _requests(llm) == before
    params = json.loads((tmp_path / "t1" / "params.json").read_text())
    assert params["params"]["horizon"] == 5


def test_rate_share_spreads_bars_over_every_provider(llm, tmp_path):
    spec = _spec(tmp_path, run_id="rs", limit=40, policies=["latency-aware"],
                 assign="rate-share", tasks=["analysis", "risk"], chunk_bars=16, inflight=None)
    out = run_backtest(llm, spec, progress=False, write_report=False)
    df = out.results
    assert out.complete and len(df) == 80 and df["ok"].all()
    assert set(df["provider"]) == set(llm.config.names)  # the policy alone would pick one
    risk = df[df["task"] == "risk"]
    assert risk["stop_distance"].notna().all() and risk["score"].notna().all()
    assert out.window >= 4 and len(out.nodes) == 1 and df["planner_node"].notna().all()


# -- the runner's decisions, against a scripted router (no Ray) -----------------------------


class _ScriptedRouter:
    """Answers like the router: a long signal; or fails as `fail(request_id)` says."""

    def __init__(self, tmp_path, fail=lambda rid: None, audits=None):
        self.config = parse_config(make_config(tmp_path))
        self.audits = {} if audits is None else audits  # what the tracker would have recorded
        self.handles = SimpleNamespace(router=SimpleNamespace(
            _actor_id=SimpleNamespace(hex=lambda: "R")))
        self.fail = fail
        self.seen: list[str] = []

    def status(self):
        raise RuntimeError("no status here")  # the window then falls back to the config

    def audit(self, rid):
        return self.audits[rid]

    async def aroute(self, req):
        from actors.routing.route import RouteResult, RoutingError, RoutingTrace, TraceAttempt

        self.seen.append(req.request_id)
        trace = RoutingTrace(request_id=req.request_id, policy=req.policy)
        err = self.fail(req.request_id)
        if err:
            self.audits[req.request_id] = [{"kind": "request", "ok": False, "cost_usd": 0.0,
                                            "error_class": err}]
            raise RoutingError(err, f"scripted {err}", trace)
        trace.attempts = [TraceAttempt(provider="llama", attempt=1, ok=True, latency_s=0.1)]
        return RouteResult(request_id=req.request_id, provider="llama", model="m", text="{}",
                           finish_reason="stop", input_tokens=10, output_tokens=5,
                           cost_usd=0.001, latency_s=0.1, trace=trace,
                           parsed={"direction": "long", "confidence": 0.6})


def _plain_spec(tmp_path, **kw):
    return _spec(tmp_path, run_id="plain", limit=12, policies=["cost-aware"], feedback=False,
                 planning="driver", inflight=4, **kw)


async def test_budget_exhaustion_stops_cleanly_and_a_rerun_finishes(tmp_path):
    from actors.backtest import arun_backtest

    n = [0]

    def budget_after_5(rid):
        n[0] += 1
        return "budget_exceeded" if n[0] > 5 else None

    audits: dict = {}
    first = await arun_backtest(_ScriptedRouter(tmp_path, budget_after_5, audits),
                                _plain_spec(tmp_path), progress=False, write_report=False)
    assert first.stopped and first.stopped.startswith("budget exceeded")
    assert not first.complete and first.finished == 5 and first.results["ok"].all()
    assert not [k for k in first.failures if "retried" in k]  # a refusal is not sent again
    router = _ScriptedRouter(tmp_path, audits=audits)
    second = await arun_backtest(router, _plain_spec(tmp_path), progress=False,
                                 write_report=False)
    assert second.complete and second.skipped == 5 and second.sent == 7
    assert second.results["key"].is_unique
    assert any(rid.endswith("~2") for rid in router.seen)  # a refused id is not reused


async def test_failures_without_spend_are_retried_then_recorded(tmp_path):
    from actors.backtest import arun_backtest

    def flaky(rid):
        if "20080602" in rid:
            return "no_provider"  # never answers
        return "breaker_open" if "~" not in rid and "20080603" in rid else None

    router = _ScriptedRouter(tmp_path, flaky)
    out = await arun_backtest(router, _plain_spec(tmp_path, bar_retries=1), progress=False,
                              write_report=False)
    df = out.results.sort_values("bar")
    assert out.complete and len(df) == 12
    first, second = df.iloc[0], df.iloc[1]
    assert not first["ok"] and first["error_class"] == "no_provider"
    assert first["request_id"].endswith("~2")  # one retry, then recorded as failed
    assert second["ok"] and second["request_id"].endswith("~2")
    assert out.failures == {"no_provider (retried)": 1, "breaker_open (retried)": 1,
                            "no_provider": 1}


async def test_contexts_follow_the_configured_regime_rule(tmp_path):
    """The router's config `regime:` section decides every bar's regime (Oct 2008: high
    volatility by default, not with a 50× ratio), is part of the run's identity, and a run
    prepared under other rules is refused before anything is sent."""
    from actors.backtest import arun_backtest

    default = _ScriptedRouter(tmp_path)
    lenient = _ScriptedRouter(tmp_path)
    lenient.config = parse_config(make_config(tmp_path, regime={"high_vol_ratio": 50}))
    spec = _spec(tmp_path, run_id=None, start="2008-10-01", limit=12, policies=["cost-aware"],
                 feedback=False, planning="driver", inflight=4)
    a = await arun_backtest(default, spec, progress=False, write_report=False)
    b = await arun_backtest(lenient, spec, progress=False, write_report=False)
    assert (a.results["regime"] == "high_volatility").all()
    assert not (b.results["regime"] == "high_volatility").any()
    assert a.run_id != b.run_id
    with pytest.raises(BacktestError, match="other regime rules"):
        await arun_backtest(lenient, prepare(spec), progress=False, write_report=False)


def test_warmup_follows_the_configured_rule(bars_csv):
    spec = BacktestSpec(series=[SeriesSpec(source=str(bars_csv / "good.csv"))])
    assert prepare(spec).series[0].bars == 400 - 219
    longer = prepare(spec, RegimeRules(trend_window=300))
    assert longer.series[0].bars == 400 - 319
    with pytest.raises(DataError, match="need at least 420 for the indicators. and the regime.s warm-up"):
        prepare(spec, RegimeRules(trend_window=400))
