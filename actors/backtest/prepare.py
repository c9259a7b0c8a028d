"""A run's identity, known before any spend: checked inputs, defining parameters, run id,
and the deterministic request id of every (bar, task, policy)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from actors.backtest.inputs import Series, load_all
from actors.backtest.plan import BarJob
from actors.backtest.spec import BacktestSpec
from actors.backtest.store import fingerprint
from actors.stores.idempotency import MAX_ID_LENGTH, safe_id
from prompts import RegimeRules

MAX_ID = MAX_ID_LENGTH


@dataclass
class Prepared:
    """Checked inputs and the run's identity, known before any spend."""

    spec: BacktestSpec
    series: list[Series]
    defining: dict[str, Any]
    run_id: str
    rules: RegimeRules  # the regime rule the series were checked under (config `regime:`)

    @property
    def total(self) -> int:
        return sum(s.bars for s in self.series) * len(self.spec.tasks) * len(self.spec.policies)


def prepare(spec: BacktestSpec, rules: RegimeRules | None = None) -> Prepared:
    """Load and check every series under the regime rules the router's config sets (default
    `RegimeRules()`); raises DataError / BacktestError before any spend."""
    rules = rules or RegimeRules()
    series = load_all(spec, rules)
    defining = {**spec.defining(), "series": [
        {"symbol": s.symbol, "timeframe": s.timeframe, "first": str(s.frame.index[s.lo]),
         "last": str(s.frame.index[s.hi]), "bars": s.bars, "data_sha256": s.sha256,
         **_regime_changes(rules, s.symbol)}
        for s in series]}
    run_id = spec.run_id or f"bt-{fingerprint(defining)[:12]}"
    return Prepared(spec, series, defining, run_id, rules)


def _regime_changes(rules: RegimeRules, symbol: str) -> dict[str, Any]:
    """The series' regime rule where it differs from the defaults: it changes every prompt, so
    a run id is not resumed under another one (empty for the defaults, keeping their ids)."""
    changed = rules.for_symbol(symbol).model_dump(exclude={"sessions"}, exclude_defaults=True)
    return {"regime": changed} if changed else {}


def request_id(run_id: str, job: BarJob, policy: str, gen: int = 1) -> str:
    rid = (f"bt:{run_id}:{policy}:{job.task}:{job.symbol}:{job.timeframe}:"
           f"{job.ts:%Y%m%dT%H%M%S}")
    if len(rid) > MAX_ID - 4 or not safe_id(rid):  # e.g. a symbol from a file name with spaces
        rid = f"bt:{run_id}:{hashlib.sha256(job.key(policy).encode()).hexdigest()[:32]}"
    return rid if gen <= 1 else f"{rid}~{gen}"
