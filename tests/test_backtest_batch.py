"""Backtest batch mode end to end: the real router and the simulator's batch APIs on the
session's Ray instance (three vendors), per-item failures retried by the rule, cost at the
batch price in the audit trail, and the rule and journal as plain code."""

from __future__ import annotations

import httpx
import pytest

from actors.backtest import BacktestSpec, SeriesSpec, run_backtest
from actors.backtest.batch_journal import BatchJournal, ItemRef, custom_id, run_tag
from actors.backtest.batch_rule import Next, next_step
from actors.core.cost import cost_usd
from actors.core.errors import ErrorClass
from tests.conftest import make_config

VENDORS = ["claude", "gemini", "gpt-4-turbo"]


@pytest.fixture(scope="module")
def llm(ray_cluster, tmp_path_factory):
    from actors.api import connect

    client = connect(config=make_config(tmp_path_factory.mktemp("backtest-batch")))
    yield client
    client.reset_budgets()
    client.shutdown(stop_ray=False)


def only(llm, vendor: str) -> None:
    """Steer every policy to `vendor`: the others' budgets leave no room for a request."""
    llm.set_budgets({"per_provider": {p: None if p == vendor else {"hourly_usd": 1e-9}
                                      for p in llm.config.names}})


def batches(llm, **settings) -> None:
    httpx.put(f"{llm.handles.simulator_url}/_sim/batches", json=settings,
              trust_env=False).raise_for_status()


def sim_counts(llm) -> tuple[dict, int]:
    url = llm.handles.simulator_url
    b = httpx.get(f"{url}/_sim/batches/stats", trust_env=False).json()
    s = httpx.get(f"{url}/_sim/stats", trust_env=False).json()
    return b, s["totals"]["requests"]


def _spec(tmp_path, run_id, **kw):
    base = {"run_id": run_id, "series": [SeriesSpec(source="sample:sp500")],
            "start": "2008-09-01", "limit": 10, "policies": ["accuracy-first"],
            "runs_dir": tmp_path, "batch": True, "batch_poll_s": 0.05, "cache": "off",
            "part_rows": 4}
    return BacktestSpec(**{**base, **kw})


@pytest.mark.parametrize("vendor", VENDORS)
def test_bars_go_as_one_batch_at_the_batch_price(llm, tmp_path, vendor):
    only(llm, vendor)
    batches(llm, delay_s=0.2, item_failure=0.0, item_expired=0.0)
    b0, req0 = sim_counts(llm)
    out = run_backtest(llm, _spec(tmp_path, f"b-{vendor}"), progress=False)
    b1, req1 = sim_counts(llm)
    df = out.results
    assert out.complete and df["ok"].all() and df["key"].is_unique and len(df) == 10, \
        (out.stopped, out.failures)
    assert set(df["provider"]) == {vendor}
    # the simulator received one job of 10 distinct items, and no synchronous request
    assert b1["jobs"] - b0["jobs"] == 1
    assert b1["items"] - b0["items"] == 10 and b1["distinct_items"] - b0["distinct_items"] == 10
    assert req1 - req0 == 10
    # cost at the batch price, in the results and in the audit trail
    spec = llm.config.provider(vendor)
    for r in df.itertuples():
        full = cost_usd(spec, int(r.input_tokens), int(r.output_tokens))
        assert r.cost_usd == pytest.approx(full * 0.5) and r.cost_usd > 0
        rows = llm.audit(r.request_id)
        req = next(x for x in rows if x["kind"] == "request")
        att = [x for x in rows if x["kind"] == "attempt"]
        assert req["ok"] and req["provider"] == vendor
        assert req["cost_usd"] == pytest.approx(r.cost_usd) and len(att) == 1
        assert att[0]["cost_usd"] == pytest.approx(r.cost_usd) and att[0]["response"]
    assert out.report.meta["batch jobs submitted"] == 1


def test_failed_items_go_to_a_later_batch_then_synchronously(llm, tmp_path):
    only(llm, "claude")
    batches(llm, delay_s=0.1, item_failure=0.5, item_expired=0.3)
    b0, req0 = sim_counts(llm)
    out = run_backtest(llm, _spec(tmp_path, "fail", limit=16, batch_retries=1),
                       progress=False, write_report=False)
    b1, req1 = sim_counts(llm)
    batches(llm, item_failure=0.0, item_expired=0.0)
    df = out.results
    assert out.complete and df["ok"].all() and df["key"].is_unique and len(df) == 16
    assert out.failures.get("server (next batch)", 0) + \
        out.failures.get("timeout (next batch)", 0) > 0
    jobs, items = b1["jobs"] - b0["jobs"], b1["items"] - b0["items"]
    assert jobs >= 2 and items > 16  # retried items went into later jobs
    retried = df[df["request_id"].str.contains("~")]
    assert len(retried) > 0  # a retry is a new request id
    # 80 % of items fail: some fail in both their batches and are then sent synchronously
    synchronously = sum(v for k, v in out.failures.items() if "synchronously" in k)
    assert synchronously > 0 and req1 - req0 >= synchronously


def test_the_retry_rule():
    assert next_step(ErrorClass.TIMEOUT, 1, 2) is Next.BATCH  # expired
    assert next_step(ErrorClass.SERVER, 2, 2) is Next.BATCH
    assert next_step(ErrorClass.SERVER, 3, 2) is Next.SYNC  # retries used up
    assert next_step(ErrorClass.INVALID_RESPONSE, 1, 2) is Next.SYNC  # billed, unusable
    assert next_step(ErrorClass.OUTPUT_LIMIT, 1, 2) is Next.SYNC
    assert next_step(ErrorClass.BAD_REQUEST, 1, 2) is Next.FAIL  # invalid: never retried


def test_journal_survives_a_torn_line_and_tags_fit_every_vendor(tmp_path):
    j = BatchJournal(tmp_path)
    tag = run_tag("bt-ab c/ü" * 8, 7)
    assert len(custom_id(tag, 99999)) <= 64
    assert all(ch.isalnum() or ch in "-_" for ch in custom_id(tag, 1))
    it = j.intend(7, "claude", tag, [ItemRef(custom_id=custom_id(tag, 0), key="k",
                                             request_id="r")])
    j.submitted(it, "msgbatch_1")
    j.close()
    with open(j.path, "a") as fh:
        fh.write('{"done": 7')  # a kill mid-write
    j2 = BatchJournal(tmp_path)
    got = j2.read()
    assert got[7].batch_id == "msgbatch_1" and not got[7].done
    j2.finished(got[7])  # the torn line is ended first, not glued to
    j2.close()
    assert BatchJournal(tmp_path).read()[7].done


def test_progress_shows_batches_per_provider_while_nothing_finishes():
    import io

    from actors.backtest.progress import Progress

    t = [0.0]
    out = io.StringIO()
    p = Progress(10, stream=out, every_s=5.0, clock=lambda: t[0])
    t[0] = 6.0
    p.batches({"claude": (8, 8, 0), "gemini": (2, 1, 1)})
    line = out.getvalue()
    assert "batch claude: 8 submitted/8 in progress/0 done" in line
    assert "batch gemini: 2 submitted/1 in progress/1 done" in line
    p.batches({"claude": (8, 4, 4)})  # not due yet: nothing more printed
    assert out.getvalue() == line


def test_three_policies_on_one_provider_pay_each_prompt_once(llm, tmp_path):
    only(llm, "gemini")
    batches(llm, delay_s=0.2, item_failure=0.0, item_expired=0.0)
    b0, _ = sim_counts(llm)
    out = run_backtest(llm, _spec(tmp_path, "twins", start="2009-02-01", cache="both",
                                  policies=["accuracy-first", "cost-aware", "latency-aware"]),
                       progress=False, write_report=False)
    b1, _ = sim_counts(llm)
    df = out.results
    assert out.complete and df["ok"].all() and len(df) == 30 and df["key"].is_unique
    assert b1["items"] - b0["items"] == 10  # one item per bar, not one per policy
    assert out.cached == 20 and (df[df["cached"]]["cost_usd"] == 0).all()


async def test_a_job_being_submitted_is_not_looked_for_and_submitted_again(tmp_path):
    """The poller runs while a submission is on the wire: an intent with no job id yet is
    not 'lost' (found by tag / submitted again) unless its submission failed or a kill
    left it so."""
    import asyncio
    from datetime import datetime
    from types import SimpleNamespace

    from actors.backtest.batch_run import BatchRun
    from actors.backtest.plan import BarJob
    from actors.clients.base import Message
    from actors.clients.batch import BatchJob
    from actors.routing.route import RouteRequest
    from tests.waiting import async_wait_until

    class Api:
        def __init__(self) -> None:
            self.submits, self.gate = 0, asyncio.Event()

        async def submit(self, items, tag):
            self.submits += 1
            await self.gate.wait()
            return BatchJob(id="job-1", provider="claude", state="in_progress",
                            total=len(items))

        async def find(self, tag, since=None):
            return []

        async def unresolved(self, since):
            return 0

        async def poll(self, job_id):
            return BatchJob(id=job_id, provider="claude", state="in_progress")

    ticks = []
    spec = BacktestSpec(series=[SeriesSpec(source="sample:sp500")], batch=True,
                        batch_poll_s=0.01, runs_dir=tmp_path)
    run = SimpleNamespace(prep=SimpleNamespace(spec=spec, run_id="r1"), window=4, router="",
                          sent=0, stopped=None,
                          store=SimpleNamespace(dispatched=lambda *a: None, dir=tmp_path),
                          progress=SimpleNamespace(batches=ticks.append))
    api = Api()
    b = BatchRun(run, {"claude": api}, BatchJournal(tmp_path), None, None)
    req = RouteRequest(messages=[Message(role="user", content="SPY?")], max_tokens=50)
    job = BarJob("SPX", "1d", 1, datetime(2008, 1, 2), "analysis", "bull", 1.0, 0.0, 0.0, req,
                 "n")
    b.pending["claude"] = [(job, "accuracy-first", 1, 1)]
    poller = asyncio.ensure_future(b._poll_loop())
    sending = asyncio.ensure_future(b._submit("claude"))
    await async_wait_until(lambda: len(ticks) >= 10, 10, what="poll ticks")
    assert api.submits == 1  # the poller left the job being submitted alone
    api.gate.set()
    await sending
    assert b.intents == {} and BatchJournal(tmp_path).read()[0].batch_id == "job-1"
    poller.cancel()
