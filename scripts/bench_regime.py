"""The regime rule on real series, side by side with the fixed rule it replaced, and its cost.

Quality, over each shipped real series' whole history (tests/real_series.py: S&P 500, NASDAQ,
GOOG daily; EURUSD hourly) — the relative rule (prompts.regime, defaults) against the fixed
one (20-bar realized vol above 35 % annualized with the equity session, no dwell):

- share of bars labelled high_volatility;
- bars with a move beyond 4σ of the trailing year, and how many were high_volatility on that
  bar and by the next one;
- the S&P 500 days of 2015–2018 with the VIX closing above 30;
- the reference periods the tests pin (Oct 2008, Sep–Dec 2008, 2004–2006).

Speed: context building per bar (`contexts_for_bars`, every bar of a whole series), the regime
rule's own share of it, and one `build_context` on 250 bars (what `analyze` does). Target:
under 200 µs a bar.

    .venv/bin/python scripts/bench_regime.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prompts import build_context, contexts_for_bars  # noqa: E402
from prompts.indicators import atr  # noqa: E402
from prompts.regime import RegimeRules, classify, regime_features  # noqa: E402
from tests.real_series import (  # noqa: E402
    REAL_SERIES,
    RealSeries,
    by_next_bar,
    load_real,
    shock_bars,
    vix_closes,
)

FIXED_THRESHOLD = 0.35  # the rule before: annualized 20-bar vol (equity session) above this
HV = "high_volatility"


def labels(bars: pd.DataFrame, timeframe: str, session: str) -> tuple[pd.Series, pd.Series]:
    """(relative rule, fixed rule) labels of every bar."""
    close = bars["close"]
    a = atr(bars["high"], bars["low"], close)
    rules = RegimeRules(session=session)
    feats = regime_features(close, a, timeframe, rules)
    relative = classify(feats, close, rules)
    trend = classify(feats.assign(vol_ratio=0.0), close, rules)  # the trend part alone
    equity_vol = regime_features(close, a, timeframe, RegimeRules())["realized_vol"]
    fixed = trend.where(~(equity_vol > FIXED_THRESHOLD) | trend.isna(), HV)
    return relative, fixed


def hits(shocks: pd.Series, lab: pd.Series, bars_later: int) -> int:
    """Shock bars labelled high_volatility on the bar (0) or by the next one (1)."""
    hv = lab == HV
    return int((shocks & (by_next_bar(hv) if bars_later else hv)).sum())


def quality() -> dict[str, tuple[pd.Series, pd.Series]]:
    print("## High-volatility share and shock detection: relative rule vs fixed 35 % rule\n")
    print("| series | bars | high_vol share: relative | fixed | 4σ bars | high_vol on the bar: "
          "relative | fixed | by the next bar: relative | fixed | peak 20-bar vol: session "
          "| equity annualization |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = {}
    for name, s in REAL_SERIES.items():
        bars = load_real(name)
        rel, fixed = labels(bars, s.timeframe, s.session)
        out[name] = (rel, fixed)
        ready = rel.notna()
        shocks = shock_bars(bars["close"], s.year) & ready
        n = int(shocks.sum())

        close = bars["close"]
        a = atr(bars["high"], bars["low"], close)
        peak = regime_features(close, a, s.timeframe, RegimeRules(session=s.session))[
            "realized_vol"].max()
        peak_eq = regime_features(close, a, s.timeframe, RegimeRules())["realized_vol"].max()
        print(f"| {s.what} | {int(ready.sum()):,} | {(rel[ready] == HV).mean():.1%} | "
              f"{(fixed[ready] == HV).mean():.1%} | {n} | {hits(shocks, rel, 0)} | "
              f"{hits(shocks, fixed, 0)} | {hits(shocks, rel, 1)} | {hits(shocks, fixed, 1)} | "
              f"{peak:.0%} | {peak_eq:.0%} |")
    rel, fixed = out["sp500"]
    vix = vix_closes()
    days = vix.index[(vix > 30) & (vix.index.year >= 2015) & (vix.index.year <= 2018)]
    days = days.intersection(rel.index)
    print(f"\nS&P 500 days 2015–2018 with VIX > 30 ({len(days)}: "
          f"{', '.join(d.strftime('%Y-%m-%d') for d in days)}):")
    for label, lab in (("relative", rel), ("fixed", fixed)):
        flagged = by_next_bar(lab == HV)[days]
        print(f"  {label:8s} high_volatility by the next bar on {int(flagged.sum())} / {len(days)};"
              f" labels on the day: {({k: int(v) for k, v in lab[days].value_counts().items()})}")
    print("\nReference periods (S&P 500):")
    for label, lab in (("relative", rel), ("fixed", fixed)):
        autumn, calm = lab["2008-09-01":"2008-12-31"], lab["2004":"2006"]
        print(f"  {label:8s} Oct 2008 high_vol {(lab['2008-10'] == HV).mean():.0%}; "
              f"Sep–Dec 2008 bear or high_vol {autumn.isin(['bear', HV]).mean():.0%}; "
              f"2004–2006 bull {(calm == 'bull').mean():.0%}, bear or high_vol "
              f"{calm.isin(['bear', HV]).mean():.1%}")
    return out


def best(repeat: int, fn: Callable[..., object], *args: object, **kw: object) -> float:
    """Shortest wall time of `repeat` calls of fn(*args, **kw)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args, **kw)
        times.append(time.perf_counter() - t0)
    return min(times)


def all_contexts(bars: pd.DataFrame, s: RealSeries, rules: RegimeRules) -> int:
    return len(list(contexts_for_bars(bars, s.symbol, s.timeframe, rules=rules)))


def regime_rule(bars: pd.DataFrame, s: RealSeries, rules: RegimeRules) -> pd.Series:
    close = bars["close"]
    feats = regime_features(close, atr(bars["high"], bars["low"], close), s.timeframe, rules)
    return classify(feats, close, rules)


def speed(repeat: int) -> None:
    print("\n## Context building (best of", repeat, "runs)\n")
    print("| series | contexts | contexts_for_bars µs/bar | regime rule µs/bar | share |")
    print("|---|---:|---:|---:|---:|")
    for name in ("sp500", "eurusd"):
        s = REAL_SERIES[name]
        bars = load_real(name)
        rules = RegimeRules(session=s.session)
        n = all_contexts(bars, s, rules)
        total = best(repeat, all_contexts, bars, s, rules)
        own = best(repeat, regime_rule, bars, s, rules)
        print(f"| {s.what} | {n:,} | {total / n * 1e6:.1f} | {own / n * 1e6:.2f} | "
              f"{own / total:.1%} |")
    recent = load_real("sp500").iloc[-250:]
    one = best(repeat, build_context, recent, "SPX", "1d")
    print(f"\nbuild_context on 250 bars (one analyze call): {one * 1e3:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timing runs; the best is shown")
    args = ap.parse_args()
    quality()
    speed(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
