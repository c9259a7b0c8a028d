"""`llm-router evaluate`: generated tables, table checks, baselines, the command, and the
off-policy replay of an audit trail (no Ray)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from actors.cli import main
from actors.config import Config
from actors.core.records import AttemptRecord, FeedbackRecord, RequestRecord
from actors.evaluate import baselines as base
from actors.evaluate.generate import SHAPES, Drift, generate
from actors.evaluate.logged import logged_stream, replay_logged
from actors.evaluate.table import TableError, from_frame
from actors.stores.audit import AuditStore


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_tables_have_the_shape_of_the_issue(seed):
    g = generate("default", seed)
    t, acc = g.table, g.accuracy
    assert 9_800 <= len(t) <= 10_200 and len(acc) == 40
    assert acc["size"].between(100, 1500).all()
    assert t["strong"].mean() == pytest.approx(0.80, abs=0.02)
    assert t["cheap"].mean() == pytest.approx(0.68, abs=0.02)
    assert 0.05 <= acc["lead"].median() <= 0.15
    assert acc["lead"].min() < -0.2 and acc["lead"].max() > 0.3
    assert t["prompt_tokens"].quantile(0.9) > 3 * t["prompt_tokens"].quantile(0.1)
    ratio = g.providers[0].input_cost_per_mtok / g.providers[1].input_cost_per_mtok
    assert ratio == pytest.approx(14.0)
    assert set(SHAPES) >= {"default", "drift", "many", "narrow", "long-prompts"}


def test_mmlu_shape_has_its_subjects_sizes_and_prompt_lengths():
    g = generate("mmlu", 0)
    t, acc = g.table, g.accuracy
    assert len(t) == 14_042 and len(acc) == 57
    assert acc.loc["professional_law", "size"] == 1534 and acc["size"].min() == 100
    med = t.groupby("task")["prompt_tokens"].median()
    assert med["high_school_european_history"] > 5 * med["elementary_mathematics"]
    assert t["strong"].mean() == pytest.approx(0.80, abs=0.02)
    assert t["cheap"].mean() == pytest.approx(0.68, abs=0.02)
    assert generate("mmlu-drift", 0).drift.category == "moral_scenarios"
    with pytest.raises(ValueError, match="drift category 'nope'"):
        generate(replace(SHAPES["mmlu"], drift=Drift(category="nope")), 0)


def cfg_of(g) -> Config:
    return Config(providers=g.providers, simulator={"mode": "always"})


def test_table_problems_name_the_column_and_row():
    g = generate("small", 0)
    cfg = cfg_of(g)
    with pytest.raises(TableError, match="at least two configured providers"):
        from_frame(g.table.drop(columns=["cheap"]), cfg)
    bad = g.table.copy()
    bad.loc[7, "strong"] = 2.0
    with pytest.raises(TableError, match="'strong' row 7"):
        from_frame(bad, cfg)
    with pytest.raises(TableError, match="'prompt' or a 'prompt_tokens'"):
        from_frame(g.table.drop(columns=["prompt_tokens"]), cfg)
    ctl = g.table.copy()
    ctl.loc[3, "task"] = "bad\nvalue"
    with pytest.raises(TableError, match="row 3: .*control character"):
        from_frame(ctl, cfg)
    text = g.table.drop(columns=["prompt_tokens"]).assign(prompt="x" * 400)
    assert from_frame(text, cfg).prompt_tokens[0] == 100


def test_the_hindsight_oracle_reaches_the_target_cheaper_than_a_random_mix():
    g = generate("small", 3)
    cfg = cfg_of(g)
    table = from_frame(g.table, cfg)
    cost = base.costs(table, cfg)
    singles = base.singles(table, cost)
    best = base.best_single(singles)
    oracle = base.oracle(table, cost, ("task",), 0.95)
    mix = base.random_mix(singles, 0.95)
    assert best.name == "strong"
    assert oracle.score == pytest.approx(0.95 * best.score) == pytest.approx(mix.score)
    assert oracle.cost_usd < mix.cost_usd < best.cost_usd


def test_evaluate_command_prints_figures_writes_json_and_a_plot(tmp_path, capsys):
    out, png = tmp_path / "e.json", tmp_path / "e.png"
    assert main(["evaluate", "synthetic:small", "--policy", "cost-aware", "--json", str(out),
                 "--plot", str(png), "--write-table", str(tmp_path / "t.csv")]) == 0
    text = capsys.readouterr().out
    for word in ("hindsight oracle", "random mix", "strong", "cheap", "cost-aware",
                 "learning curve", "quarter"):
        assert word in text
    data = json.loads(out.read_text())
    names = [r["strategy"] for r in data["summary"]]
    assert names == ["strong", "cheap", "random mix", "hindsight oracle", "cost-aware"]
    assert len(data["quarters"]["cost-aware#1"]) == 4
    assert png.stat().st_size > 10_000
    # the written table is itself a valid input (with a config naming its providers)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"providers": [p.model_dump(mode="json")
                                             for p in generate("small", 0).providers]}))
    assert main(["evaluate", str(tmp_path / "t.csv"), "--config", str(cfg),
                 "--policy", "accuracy-first"]) == 0


def test_evaluate_command_refuses_bad_input_clearly(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["evaluate", "synthetic:nope"]) == 2
    assert "unknown shape 'nope'" in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "give an outcome table" in capsys.readouterr().err


def test_off_policy_replay_of_a_uniformly_logged_trail(tmp_path):
    """Li et al.'s replay: with uniformly random logging, the accepted events' mean is an
    unbiased estimate of the policy's score."""
    g = generate("small", 5)
    cfg = cfg_of(g)
    rng = np.random.default_rng(0)
    store = AuditStore(tmp_path / "a.sqlite3")
    recs = []
    for i, row in enumerate(g.table.itertuples()):
        p = "strong" if rng.random() < 0.5 else "cheap"
        spec = cfg.provider(p)
        cost = (row.prompt_tokens * spec.input_cost_per_mtok
                + row.output_tokens * spec.output_cost_per_mtok) / 1e6
        ctx = {"task": row.task}
        recs += [AttemptRecord(request_id=row.request_id, attempt=1, ts=i, provider=p,
                               model=spec.model, context=ctx, ok=True,
                               input_tokens=row.prompt_tokens, output_tokens=row.output_tokens,
                               cost_usd=cost),
                 RequestRecord(request_id=row.request_id, ts=i + 0.1, provider=p, model=spec.model,
                               context=ctx, ok=True, attempts=1, input_tokens=row.prompt_tokens,
                               output_tokens=row.output_tokens, cost_usd=cost),
                 FeedbackRecord(request_id=row.request_id, ts=i + 0.2, score=getattr(row, p))]
    store.store(recs)
    stream = logged_stream(store)
    store.close()
    assert len(stream) == len(g.table)
    est = replay_logged(stream, cfg, "accuracy-first")
    assert 0.3 * len(stream) < est.accepted < 0.7 * len(stream)
    truth = pd.Series(g.table["strong"]).mean()
    assert est.score == pytest.approx(truth, abs=0.04)  # it learns to pick the strong one
    assert est.logged_score < est.score
    assert "uniformly random" in est.render()
