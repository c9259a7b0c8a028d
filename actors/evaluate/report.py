"""Evaluate policies on an outcome table: figures against the baselines, a learning curve
per quarter of the stream, a plot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from actors.config import Config
from actors.core.contexts import configured_keys
from actors.evaluate import baselines as base
from actors.evaluate.replay import Replayed, replay
from actors.evaluate.table import OutcomeTable


@dataclass
class PolicyRun:
    policy: str
    run: int
    replayed: Replayed
    score: float
    cost_usd: float
    quarters: pd.DataFrame  # quarter → score, cost, both relative to the best single provider


@dataclass
class Evaluation:
    target: float
    best: base.Point
    baselines: list[base.Point]
    runs: list[PolicyRun] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """One row per strategy: mean score and cost, absolute and relative to the best
        single provider."""
        rows = [{"strategy": p.name, "score": p.score, "cost_usd": p.cost_usd}
                for p in self.baselines]
        for r in self.runs:
            name = r.policy if self._runs_of(r.policy) == 1 else f"{r.policy} (run {r.run + 1})"
            rows.append({"strategy": name, "score": r.score, "cost_usd": r.cost_usd,
                         "explored": float(r.replayed.explored.mean())})
        df = pd.DataFrame(rows).set_index("strategy")
        df["score_vs_best"] = df["score"] / self.best.score
        df["cost_vs_best"] = df["cost_usd"] / self.best.cost_usd
        cols = ["score", "score_vs_best", "cost_usd", "cost_vs_best"]
        return df[cols + (["explored"] if "explored" in df else [])]

    def _runs_of(self, policy: str) -> int:
        return sum(1 for r in self.runs if r.policy == policy)


def quarters(rep: Replayed, table: OutcomeTable, cost: dict[str, np.ndarray],
             best: str) -> pd.DataFrame:
    """Per quarter of the stream: score and cost relative to the best single provider's
    on the same requests (the learning curve)."""
    rows = []
    for q, idx in enumerate(np.array_split(np.arange(len(table)), 4), start=1):
        rows.append({"quarter": q,
                     "score_vs_best": np.nanmean(rep.outcome[idx]) / table.outcomes[best][idx].mean(),
                     "cost_vs_best": rep.cost[idx].sum() / cost[best][idx].sum(),
                     "explored": rep.explored[idx].mean()})
    return pd.DataFrame(rows).set_index("quarter")


def evaluate(table: OutcomeTable, config: Config, policies: list[str], *,
             target: float | None = None, outcome_value_usd: float | None = None,
             inflight: int = 8, runs: int = 1, seed: int = 0,
             progress: Callable[[str], None] | None = None) -> Evaluation:
    """Replay `table` through each policy (`runs` times, different sampling seeds)."""
    from actors.routing.router import RouterSpec

    target = target or RouterSpec.model_validate(config.router).quality_target
    cost = base.costs(table, config)
    singles = base.singles(table, cost)
    best = base.best_single(singles)
    points = [*singles, base.random_mix(singles, target),
              base.oracle(table, cost, configured_keys(config), target)]
    ev = Evaluation(target, best, points)
    for policy in policies:
        for run in range(runs):
            if progress:
                progress(f"{policy}, run {run + 1}/{runs}")
            rep = replay(table, config, policy, inflight=inflight, seed=seed + run,
                         quality_target=target if outcome_value_usd is None else None,
                         outcome_value_usd=outcome_value_usd)
            ev.runs.append(PolicyRun(policy, run, rep, float(np.nanmean(rep.outcome)),
                                     float(rep.cost.sum()),
                                     quarters(rep, table, cost, best.name)))
    return ev


def render(ev: Evaluation) -> str:
    lines = [f"quality target {ev.target:g} × the best single provider ({ev.best.name}: score "
             f"{ev.best.score:.4f}, ${ev.best.cost_usd:.4f})", "",
             ev.summary().to_string(float_format=lambda x: f"{x:.4f}"), ""]
    for r in ev.runs:
        lines += [f"learning curve: {r.policy} (run {r.run + 1}), per quarter of the stream",
                  r.quarters.to_string(float_format=lambda x: f"{x:.3f}"), ""]
    return "\n".join(lines)


def plot(ev: Evaluation, path: str | Path) -> Path:
    """Cost vs score of every strategy, and each policy's learning curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for p in ev.baselines:
        ax1.scatter(p.cost_usd / ev.best.cost_usd, p.score / ev.best.score, marker="s")
        ax1.annotate(p.name, (p.cost_usd / ev.best.cost_usd, p.score / ev.best.score),
                     fontsize=8, xytext=(4, 4), textcoords="offset points")
    for r in ev.runs:
        x, y = r.cost_usd / ev.best.cost_usd, r.score / ev.best.score
        ax1.scatter(x, y, marker="o")
        ax1.annotate(f"{r.policy} #{r.run + 1}", (x, y), fontsize=8, xytext=(4, -10),
                     textcoords="offset points")
        ax2.plot(r.quarters.index, r.quarters["cost_vs_best"], marker="o",
                 label=f"{r.policy} #{r.run + 1} cost")
        ax2.plot(r.quarters.index, r.quarters["score_vs_best"], marker="x", linestyle="--",
                 label=f"{r.policy} #{r.run + 1} score")
    ax1.axhline(ev.target, color="grey", linewidth=0.8, linestyle=":")
    ax1.set_xlabel(f"cost relative to {ev.best.name} only")
    ax1.set_ylabel(f"outcome score relative to {ev.best.name} only")
    ax1.set_title("strategies")
    ax2.set_xlabel("quarter of the stream")
    ax2.set_ylabel(f"relative to {ev.best.name} only")
    ax2.set_xticks([1, 2, 3, 4])
    ax2.set_title("learning curve")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
