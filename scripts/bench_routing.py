"""How well the router chooses, measured side by side in one run on generated outcomes.

For each shape and seed: a table of 10–14k requests with known per-context accuracies (two
providers 14× apart, actors/evaluate/generate.py; `mmlu*`: MMLU's 57 subjects and sizes), replayed through the plain Router core
(the live router's learner, policies and exploration; 8 requests in flight; outcomes fed
back at once). Printed: accuracy and cost relative to the strong provider alone, against
the random mix and the per-context hindsight oracle at the same target; the learning curve
per quarter; run-to-run spread (different sampling seeds, same table); and the gap to the
oracle held to each run's own score (`eq-score gap`: the price of learning, read where the
run landed — the frontier is steep, +0.005 of score costs about +0.04). Plus the time of
one policy decision for 5 providers with sampling, and optionally (--live N) the same
stream through the real actors on the simulator, compared with the replay.

    .venv/bin/python scripts/bench_routing.py [--shapes mmlu,mmlu-narrow,mmlu-drift]
        [--seeds 0,1,2] [--runs 2] [--plot routing.png] [--live 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.config import Config, load_config  # noqa: E402
from actors.core.contexts import configured_keys  # noqa: E402
from actors.evaluate import baselines as base  # noqa: E402
from actors.evaluate.generate import generate  # noqa: E402
from actors.evaluate.report import evaluate, plot  # noqa: E402
from actors.evaluate.table import from_frame  # noqa: E402


def decision_us() -> dict[str, float]:
    """One decision (posteriors, the exploring ranking, policy, budget) for the 5 shipped providers,
    in CPU time (process time: on a shared machine wall time mostly measures waiting)."""
    from actors.clients.base import Message
    from actors.core.records import FeedbackRecord, RequestRecord
    from actors.core.snapshot import Need
    from actors.routing.route import RouteRequest, RoutingTrace
    from actors.routing.router import Router

    cfg = load_config(None)
    router = Router(cfg, None, lambda r: None)  # type: ignore[arg-type]
    names = list(router.providers)
    for i in range(2000):  # some history, so every provider has estimates and exploring is on
        ctx = {"task": f"t{i % 20}"}
        rid = f"r{i}"
        router.learner.observe(RequestRecord(request_id=rid, ts=i, policy="cost-aware",
                                             context=ctx, provider=names[i % 5], ok=True,
                                             attempts=1, input_tokens=800, quality_target=0.95))
        router.learner.observe(FeedbackRecord(request_id=rid, ts=i, score=float(i % 3 > 0)))
    msgs = [Message(role="user", content="x" * 3200)]
    out = {}
    for policy in ("cost-aware", "accuracy-first", "latency-aware"):
        req = RouteRequest(messages=msgs, policy=policy, context={"task": "t3"})

        trace = RoutingTrace(request_id="x", policy=policy)

        def once(req=req, policy=policy, trace=trace) -> None:
            need = Need(800, None, req.context, 400, {})
            router._decide(req, policy, need, trace, {})

        n = 2000
        out[policy] = min(timeit.Timer(once, timer=time.process_time).repeat(
            number=n, repeat=3)) / n * 1e6
    # cost-aware right after a feedback in the context: its posterior is recomputed first
    ctx = router.learner._ctx[router.learner.key({"task": "t3"})]
    req = RouteRequest(messages=msgs, policy="cost-aware", context={"task": "t3"})
    trace = RoutingTrace(request_id="x", policy="cost-aware")

    def fresh() -> None:
        ctx.post = None  # what a feedback there does
        router._decide(req, "cost-aware", Need(800, None, req.context, 400, {}), trace, {})

    out["cost-aware after a feedback"] = min(timeit.Timer(
        fresh, timer=time.process_time).repeat(number=2000, repeat=3)) / 2000 * 1e6
    # side by side: the first release's decision (rank over cached candidates, no learning)
    from actors.core.snapshot import Candidate
    from actors.policy.policies import PolicySettings, rank

    cands = [Candidate.from_snapshot(s) for s in router.snapshots.values()]
    need = Need(800, None, {}, 400, {})
    out["rank only (reference)"] = min(timeit.Timer(
        lambda: rank("cost-aware", cands, need, PolicySettings(), 0.0),
        timer=time.process_time).repeat(number=2000, repeat=3)) / 2000 * 1e6
    return out


async def live_stream(n: int, seed: int) -> dict[str, float]:
    """The same kind of stream through connect() (simulator), 8 in flight."""
    import tempfile

    from actors.api import connect
    from actors.evaluate.replay import areplay, prompt_of

    g = generate("mmlu", seed)
    rows = g.table.head(n)
    tmp = tempfile.mkdtemp(prefix="bench-routing-")
    cfg = {"providers": [p.model_dump(mode="json") for p in g.providers],
           "simulator": {"mode": "always", "latency_scale": 0.0},
           "tracker": {"db_path": f"{tmp}/audit.sqlite3"}, "router": {"seed": seed}}
    llm = connect(config=cfg)
    sem = asyncio.Semaphore(8)
    got: list = [None] * len(rows)

    async def one(i: int, row) -> None:
        async with sem:
            r = await llm.acomplete(prompt_of(row.prompt_tokens), policy="cost-aware",
                                    context={"task": row.task}, request_id=row.request_id)
            s = float(getattr(row, r.provider))
            await llm.afeedback(r.request_id, s)
            strong = g.providers[0]
            got[i] = (r.provider, s, r.cost_usd, (r.input_tokens * strong.input_cost_per_mtok
                                                 + r.output_tokens * strong.output_cost_per_mtok)
                      / 1e6)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i, row) for i, row in enumerate(rows.itertuples())))
    wall = time.monotonic() - t0
    llm.shutdown(stop_ray=True)
    score = np.mean([x[1] for x in got])
    live = {"requests": len(rows), "wall_s": wall,
            "score_vs_strong": score / rows["strong"].mean(),
            "cost_vs_strong": sum(x[2] for x in got) / sum(x[3] for x in got),
            "cheap_share": np.mean([x[0] == "cheap" for x in got])}
    c = Config(providers=g.providers, simulator={"mode": "always"})
    t = from_frame(rows, c)
    rep = await areplay(t, c, "cost-aware", seed=seed)  # inside this loop: not replay()
    strong_cost = sum(float(x) for x in (t.prompt_tokens * g.providers[0].input_cost_per_mtok
                                         + t.output_tokens["strong"]
                                         * g.providers[0].output_cost_per_mtok) / 1e6)
    live["replay_score_vs_strong"] = np.nanmean(rep.outcome) / rows["strong"].mean()
    live["replay_cost_vs_strong"] = rep.cost.sum() / strong_cost
    live["replay_cheap_share"] = np.mean([x == "cheap" for x in rep.chosen])
    return live


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="mmlu,mmlu-narrow,mmlu-drift")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", type=int, default=2, help="sampling seeds per table")
    ap.add_argument("--policies", default="cost-aware,accuracy-first")
    ap.add_argument("--plot", default=None, help="plot of the first table's evaluation")
    ap.add_argument("--live", type=int, default=0, help="also N requests through the actors")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results: dict = {"tables": []}
    print("policy decision, 5 providers, sampling on (CPU µs per decision):")
    results["decision_us"] = decision_us()
    for p, us in results["decision_us"].items():
        print(f"  {p:<15} {us:6.1f} µs")
    print()
    header = (f"{'shape':<13}{'seed':>5} {'policy':<15}{'score/strong':>13}{'cost/strong':>12}"
              f"{'oracle cost':>12}{'mix cost':>9}{'eq-score gap':>13}   quarters cost (score)")
    print(header)
    first = True
    for shape in args.shapes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            g = generate(shape, seed)
            cfg = Config(providers=g.providers, simulator={"mode": "always"})
            table = from_frame(g.table, cfg)
            ev = evaluate(table, cfg, args.policies.split(","), runs=args.runs, seed=0)
            oracle = next(p for p in ev.baselines if p.name == "hindsight oracle")
            mix = next(p for p in ev.baselines if p.name == "random mix")
            cost = base.costs(table, cfg)
            for r in ev.runs:
                q = r.quarters
                # the hindsight oracle held to this run's own score: the learning's price,
                # whatever score the run landed on (a run landing higher pays along a
                # steep frontier, one landing lower looks cheaper than it is)
                at_score = base.oracle(table, cost, configured_keys(cfg),
                                       min(r.score / ev.best.score, 0.999))
                eq_gap = (r.cost_usd - at_score.cost_usd) / ev.best.cost_usd
                curve = " ".join(f"{c:.2f}({s:.3f})" for c, s in zip(
                    q["cost_vs_best"], q["score_vs_best"], strict=True))
                print(f"{shape:<13}{seed:>5} {r.policy + f' #{r.run + 1}':<15}"
                      f"{r.score / ev.best.score:>13.3f}{r.cost_usd / ev.best.cost_usd:>12.3f}"
                      f"{oracle.cost_usd / ev.best.cost_usd:>12.3f}"
                      f"{mix.cost_usd / ev.best.cost_usd:>9.3f}{eq_gap:>+13.3f}   {curve}",
                      flush=True)
                results["tables"].append({
                    "shape": shape, "seed": seed, "policy": r.policy, "run": r.run,
                    "score_vs_best": r.score / ev.best.score,
                    "cost_vs_best": r.cost_usd / ev.best.cost_usd,
                    "oracle_cost": oracle.cost_usd / ev.best.cost_usd,
                    "mix_cost": mix.cost_usd / ev.best.cost_usd,
                    "equal_score_gap": eq_gap,
                    "quarters_cost": list(q["cost_vs_best"]),
                    "quarters_score": list(q["score_vs_best"])})
            if first and args.plot:
                print(f"plot: {plot(ev, args.plot)}")
                first = False
    rows = [t for t in results["tables"] if t["policy"] == "cost-aware"]
    if rows:
        spread = {}
        for t in rows:
            spread.setdefault((t["shape"], t["seed"]), []).append(t["cost_vs_best"])
        worst = max(max(v) - min(v) for v in spread.values())
        gaps = [max(abs(c - t["cost_vs_best"]) for c in t["quarters_cost"][1:]) for t in rows]
        eq = [t["equal_score_gap"] for t in rows]
        print(f"\ncost-aware: score/strong {min(t['score_vs_best'] for t in rows):.3f}–"
              f"{max(t['score_vs_best'] for t in rows):.3f}, cost/strong "
              f"{min(t['cost_vs_best'] for t in rows):.3f}–"
              f"{max(t['cost_vs_best'] for t in rows):.3f} (oracle "
              f"{statistics.mean(t['oracle_cost'] for t in rows):.3f} on average); "
              f"gap to the oracle at each run's own score {statistics.mean(eq):+.3f} on "
              f"average (max {max(eq):+.3f}); "
              f"run-to-run cost spread ≤ {worst:.3f}; quarters 2–4 within "
              f"{max(gaps):.3f} of the whole-stream cost")
    if args.live:
        print(f"\nlive: {args.live} requests through the actors (simulator, 8 in flight)")
        results["live"] = asyncio.run(live_stream(args.live, 0))
        for k, v in results["live"].items():
            print(f"  {k:<24} {v:.3f}" if isinstance(v, float) else f"  {k:<24} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
