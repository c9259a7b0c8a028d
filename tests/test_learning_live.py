"""The learning loop through the real actors: two simulated providers 14× apart, a stream
of requests with 8 in flight, each chosen provider's outcome (from a generated table) fed
back at once; the router learns it without a flush, and a killed router comes back with
the same estimates, rebuilt from the audit trail."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from actors.api import RouterClient, connect
from actors.evaluate.generate import generate
from actors.evaluate.replay import prompt_of, replay
from actors.evaluate.table import from_frame
from tests.conftest import restart_router
from tests.waiting import wait_until

N = 600


@pytest.fixture(scope="module")
def live(ray_cluster, tmp_path_factory):
    g = generate("small", 6)
    cfg = {"providers": [p.model_dump(mode="json") for p in g.providers],
           "simulator": {"mode": "always", "latency_scale": 0.0},
           "tracker": {"db_path": str(tmp_path_factory.mktemp("live") / "audit.sqlite3")},
           "router": {"default_policy": "cost-aware", "seed": 0}}
    llm = connect(config=cfg)
    yield g, llm
    llm.shutdown(stop_ray=False)


async def stream(llm: RouterClient, g, n: int) -> list[tuple[str, str, float, float]]:
    """8 in flight; feedback as soon as each answer is back."""
    rows = g.table.head(n)
    sem = asyncio.Semaphore(8)
    out: list = [None] * n

    async def one(i: int, row) -> None:
        async with sem:
            r = await llm.acomplete(prompt_of(row.prompt_tokens), policy="cost-aware",
                                    context={"task": row.task}, request_id=row.request_id,
                                    max_tokens=200)
            score = float(getattr(row, r.provider))
            await llm.afeedback(r.request_id, score)
            out[i] = (r.request_id, r.provider, score, r.cost_usd)

    await asyncio.gather(*(one(i, row) for i, row in enumerate(rows.itertuples())))
    return out


def test_live_stream_learns_from_prompt_feedback_and_survives_a_router_restart(live):
    g, llm = live
    out = asyncio.run(stream(llm, g, N))
    # every outcome reached the router's learner at once (no flush): the price of quality
    # for the default target counted them all
    [price] = llm.quality_prices().to_dict("records")
    assert price["quality_target"] == 0.95 and price["updates"] == N
    est = llm.estimates()
    busy = g.table.head(N)["task"].value_counts().index[0]
    assert est.loc[("strong", f"task={busy}"), "evidence"] + est.loc[
        ("cheap", f"task={busy}"), "evidence"] > 10
    chosen = [p for _, p, _, _ in out]
    assert 0 < chosen.count("cheap") < N  # it used both, as the replay does
    rid, provider, score, _ = out[-1]
    rows = llm.audit(rid)  # the feedback went to the audit trail after the request's rows
    assert rows[-1]["kind"] == "feedback" and rows[-1]["score"] == score

    # the live path behaves as the evaluate replay says on the same requests
    table = from_frame(g.table.head(N), llm.config)
    rep = replay(table, llm.config, "cost-aware", seed=0)
    assert abs(np.mean([p == "cheap" for p in chosen])
               - np.mean([p == "cheap" for p in rep.chosen])) < 0.25

    before = llm.estimates()
    restart_router(llm)
    llm.budgets()  # first call on the restarted router: it rebuilds from the trail
    wait_until(lambda: len(llm.estimates()) == len(before), 30,
               what="the restarted router's estimates rebuilt from the trail")
    after = llm.estimates().loc[before.index]
    assert np.allclose(after["score"], before["score"], atol=1e-6)
    assert np.allclose(after["evidence"], before["evidence"], atol=1e-6)
    [again] = llm.quality_prices().to_dict("records")
    assert again["value_usd"] == pytest.approx(price["value_usd"], rel=1e-6)
    # and it keeps learning: feedback for a request answered before the restart lands
    llm.feedback(rid, 1.0 - score)
    assert llm.audit(rid)[-1]["score"] == 1.0 - score
