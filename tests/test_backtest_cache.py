"""Backtests pay once: re-runs and multi-policy runs through the response cache (real router
and simulator on the session's Ray instance), and Ctrl-C never leaves a paid answer behind."""

from __future__ import annotations

import asyncio

import pytest

from actors.backtest import BacktestSpec, SeriesSpec, run_backtest
from actors.backtest.store import RunStore
from tests.conftest import make_config
from tests.test_backtest import _plain_spec, _ScriptedRouter

POLICIES = ["accuracy-first", "cost-aware", "latency-aware"]


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    from actors.api import connect

    client = connect(config=make_config(tmp_path_factory.mktemp("backtest-cache")))
    yield client
    client.shutdown(stop_ray=False)


def _spec(tmp_path, run_id, **kw):
    base = {"run_id": run_id, "series": [SeriesSpec(source="sample:sp500")],
            "start": "2008-09-01", "limit": 12, "policies": POLICIES, "runs_dir": tmp_path,
            "inflight": 6, "part_rows": 8}
    return BacktestSpec(**{**base, **kw})


def _sim_requests(llm) -> int:
    import ray

    return ray.get(llm.simulator.stats.remote())["totals"]["requests"]


def _paid(llm) -> int:
    llm.flush()
    costs = llm.costs("hour")
    return int(costs["requests"].sum()) if len(costs) else 0


def test_a_rerun_pays_nothing_and_three_policies_pay_each_provider_and_prompt_once(
        llm, tmp_path):
    sim0, paid0 = _sim_requests(llm), _paid(llm)
    first = run_backtest(llm, _spec(tmp_path, "first"), progress=False, write_report=False)
    assert first.complete and first.results["ok"].all()
    distinct = first.results[["provider", "ts"]].drop_duplicates()
    assert _paid(llm) - paid0 == len(distinct)  # each (provider, prompt) paid once
    assert first.cached == len(first.results) - len(distinct)

    sim1, paid1 = _sim_requests(llm), _paid(llm)
    evidence = llm.estimates()["evidence"]
    again = run_backtest(llm, _spec(tmp_path, "again"), progress=False)
    assert again.complete and again.cached == 36 and again.spend_usd == 0.0
    assert _sim_requests(llm) == sim1 and _paid(llm) == paid1  # no provider called
    # the re-run's scores reached the audit trail, and taught the learner nothing new
    assert again.feedback_sent == int(again.results["score"].notna().sum()) > 0
    for rid in again.results["request_id"].head(5):
        audit = llm.audit(rid)
        assert [r["kind"] for r in audit] == ["request", "feedback"] and audit[0]["cached"]
    # (hits only age what was learned; a score learned again would add evidence)
    assert (llm.estimates()["evidence"].reindex(evidence.index) <= evidence + 1e-9).all()
    df = again.results.set_index(["policy", "ts"]).sort_index()
    was = first.results.set_index(["policy", "ts"]).sort_index()
    assert (df["answer"] == was["answer"]).all() and (df["provider"] == was["provider"]).all()
    assert df["cached"].all() and df["cost_usd"].eq(0).all()
    worth = first.results["cost_usd"].sum() + first.results["saved_usd"].sum()
    assert df["saved_usd"].sum() == pytest.approx(worth)  # every answer at its price then
    assert again.report.meta["answered from the response cache"] == 36
    hits = llm.costs("hour")["cache_hits"].sum()
    assert hits >= 36
    assert sim1 > sim0


def test_cache_only_replays_without_any_provider_call_and_no_cache_pays(llm, tmp_path):
    fresh = {"start": "2009-03-02", "policies": ["cost-aware"]}  # bars no other test asks
    run_backtest(llm, _spec(tmp_path, "seed", limit=3, **fresh), progress=False,
                 write_report=False)
    sim = _sim_requests(llm)
    only = run_backtest(llm, _spec(tmp_path, "only", limit=5, cache="only", **fresh),
                        progress=False, write_report=False)
    assert _sim_requests(llm) == sim
    assert only.cached == 3 and not only.complete
    assert only.failures == {"cache_miss (unfinished)": 2}  # left undone, not stored
    off = run_backtest(llm, _spec(tmp_path, "off", limit=3, cache="off", **fresh),
                       progress=False, write_report=False)
    assert off.cached == 0 and _sim_requests(llm) == sim + 3


class _Slow(_ScriptedRouter):
    async def aroute(self, req):
        await asyncio.sleep(0.05)
        return await super().aroute(req)


async def test_ctrl_c_stores_the_answers_in_flight_and_the_resume_sends_none_again(tmp_path):
    from actors.backtest import arun_backtest

    first = _Slow(tmp_path)
    task = asyncio.ensure_future(arun_backtest(first, _plain_spec(tmp_path), progress=False,
                                               write_report=False))
    while len(first.seen) < 6:
        await asyncio.sleep(0.01)
    task.cancel()  # what asyncio.run does on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = RunStore(tmp_path, "plain").load()
    assert len(stored) == len(first.seen)  # every request sent got its answer stored
    second = _Slow(tmp_path)
    out = await arun_backtest(second, _plain_spec(tmp_path), progress=False,
                              write_report=False)
    assert out.complete and out.results["key"].is_unique
    assert not set(first.seen) & set(second.seen)  # nothing sent (paid) twice
    assert len(first.seen) + len(second.seen) == 12
