"""The backtest report: tables from the results Parquet, written as Markdown and HTML with
PNG plots next to the Parquet files, and printed as text.

Tables: per provider (requests, share, attempt success rate, p50/p95 latency of the answering
attempt, tokens, cost, realized hit rate), per regime, hit rate by provider × regime, per
task, hourly cost, and a policy comparison when more than one policy ran. A request's
tokens and cost count for the provider that answered it (failed fallback attempts included).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PLOTS = ("cost_over_time.png", "provider_mix.png", "hit_rate.png")


@dataclass
class Report:
    tables: dict[str, pd.DataFrame]
    meta: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _tried(df: pd.DataFrame) -> pd.DataFrame:
    """One row per attempt from the `tried` column ("claude:ok,gemini:rate_limited")."""
    rows = []
    for s in df["tried"].dropna():
        for part in str(s).split(","):
            if ":" in part:
                p, outcome = part.split(":", 1)
                rows.append((p, outcome == "ok"))
    return pd.DataFrame(rows, columns=["provider", "ok"])


def provider_table(df: pd.DataFrame, providers: list[str] | None = None) -> pd.DataFrame:
    ok = df[df["ok"]]
    names = list(dict.fromkeys([*(providers or []), *ok["provider"].dropna().unique()]))
    att = _tried(df)
    rows = []
    for p in names:
        mine = ok[ok["provider"] == p]
        a = att[att["provider"] == p]
        lat = mine["attempt_latency_s"].dropna()
        scored = mine["score"].dropna()
        rows.append({
            "provider": p, "requests": len(mine),
            "share": len(mine) / len(ok) if len(ok) else np.nan,
            "success_rate": a["ok"].mean() if len(a) else np.nan,
            "p50_s": lat.quantile(0.5) if len(lat) else np.nan,
            "p95_s": lat.quantile(0.95) if len(lat) else np.nan,
            "tokens": int(mine["input_tokens"].sum() + mine["output_tokens"].sum()),
            "cost_usd": mine["cost_usd"].sum(),
            "hit_rate": scored.mean() if len(scored) else np.nan, "scored": len(scored),
        })
    failed = df[~df["ok"]]
    if len(failed):
        rows.append({"provider": "(failed)", "requests": len(failed), "share": np.nan,
                     "success_rate": 0.0, "p50_s": np.nan, "p95_s": np.nan,
                     "tokens": int(failed["input_tokens"].sum() + failed["output_tokens"].sum()),
                     "cost_usd": failed["cost_usd"].sum(), "hit_rate": np.nan, "scored": 0})
    return pd.DataFrame(rows).set_index("provider")


def _group(df: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    g = df.groupby(by, sort=True)
    out = pd.DataFrame({
        "requests": g.size(),
        "success_rate": g["ok"].mean(),
        "cost_usd": g["cost_usd"].sum(),
        "hit_rate": g["score"].mean(),
        "scored": g["score"].count(),
    })
    return out


def regime_table(df: pd.DataFrame) -> pd.DataFrame:
    return _group(df, "regime")


def hit_rate_matrix(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df["ok"] & df["score"].notna()]
    if ok.empty:
        return pd.DataFrame()
    return ok.pivot_table(index="provider", columns="regime", values="score", aggfunc="mean")


def policy_table(df: pd.DataFrame) -> pd.DataFrame:
    out = _group(df, "policy")
    out["cost_per_request"] = out["cost_usd"] / out["requests"]
    out["request_p50_s"] = df.groupby("policy")["latency_s"].median()  # queueing included
    mix = df[df["ok"]].groupby("policy")["provider"].value_counts(normalize=True)
    out["provider_mix"] = [
        ", ".join(f"{p} {v:.0%}" for p, v in mix.loc[pol].items()) if pol in mix.index else ""
        for pol in out.index
    ]
    return out


def hourly_cost(df: pd.DataFrame) -> pd.DataFrame:
    t = pd.to_datetime(df["done_at"], unit="s", utc=True).dt.floor("h")
    g = df.assign(hour=t).groupby("hour")
    return pd.DataFrame({"requests": g.size(), "cost_usd": g["cost_usd"].sum()})


def build(df: pd.DataFrame, providers: list[str] | None = None,
          meta: dict[str, Any] | None = None) -> Report:
    tables = {"providers": provider_table(df, providers)}
    if df.empty:
        return Report(tables, dict(meta or {}))
    tables["regimes"] = regime_table(df)
    hm = hit_rate_matrix(df)
    if not hm.empty:
        tables["hit_rate_by_provider_and_regime"] = hm
    if df["task"].nunique() > 1:
        tables["tasks"] = _group(df, "task")
    if df["policy"].nunique() > 1:
        tables["policies"] = policy_table(df)
    tables["hourly_cost"] = hourly_cost(df)
    m = dict(meta or {})
    span = df["done_at"].max() - df["done_at"].min()
    m.setdefault("results", len(df))
    m.setdefault("cost_usd", round(float(df["cost_usd"].sum()), 6))
    if span > 0:
        m.setdefault("cost_per_hour_usd (at this run's pace)",
                     round(float(df["cost_usd"].sum()) / (span / 3600), 4))
    return Report(tables, m)


# -- output -----------------------------------------------------------------------------

_FMT = {"share": "{:.1%}", "success_rate": "{:.1%}", "hit_rate": "{:.1%}", "cost_usd": "${:.4f}",
        "cost_per_request": "${:.5f}", "p50_s": "{:.2f}", "p95_s": "{:.2f}",
        "request_p50_s": "{:.2f}"}


def _fmt(df: pd.DataFrame, matrix: bool = False) -> pd.DataFrame:
    out = df.copy().astype(object)
    for col in df.columns:
        f = "{:.1%}" if matrix else _FMT.get(str(col))
        if f:
            out[col] = [("" if pd.isna(v) else f.format(v)) for v in df[col]]
    return out


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def text(report: Report) -> str:
    parts = []
    for name, t in report.tables.items():
        parts.append(f"== {_title(name)}")
        parts.append(_fmt(t, name.startswith("hit_rate_by")).to_string())
        parts.append("")
    return "\n".join(parts)


def _md_table(df: pd.DataFrame) -> str:
    idx = df.index.name or ""
    cols = [idx, *map(str, df.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i, row in df.iterrows():
        lines.append("| " + " | ".join([str(i), *("" if pd.isna(v) else str(v) for v in row)]) + " |")
    return "\n".join(lines)


def write(report: Report, run_dir: Path, results: pd.DataFrame) -> dict[str, Path]:
    """report.md, report.html and the PNG plots into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    files = plots(results, run_dir)
    meta = "\n".join(f"- {k}: {v}" for k, v in report.meta.items())
    md = [f"# Backtest {report.meta.get('run_id', '')}", "", meta, ""]
    h = [f"<html><head><meta charset='utf-8'><title>Backtest {html.escape(str(report.meta.get('run_id', '')))}"
         "</title><style>body{font-family:sans-serif} table{border-collapse:collapse} "
         "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>",
         f"<h1>Backtest {html.escape(str(report.meta.get('run_id', '')))}</h1><ul>"]
    h += [f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in report.meta.items()]
    h.append("</ul>")
    for name, t in report.tables.items():
        f = _fmt(t, name.startswith("hit_rate_by"))
        md += [f"## {_title(name)}", "", _md_table(f), ""]
        h += [f"<h2>{_title(name)}</h2>", f.to_html(na_rep="")]
    for png in files.values():
        md += [f"![{png.stem}]({png.name})", ""]
        h.append(f"<p><img src='{png.name}' alt='{png.stem}'></p>")
    h.append("</body></html>")
    (run_dir / "report.md").write_text("\n".join(md))
    (run_dir / "report.html").write_text("\n".join(h))
    report.files = {"report.md": run_dir / "report.md", "report.html": run_dir / "report.html",
                    **files}
    return report.files


def plots(df: pd.DataFrame, run_dir: Path) -> dict[str, Path]:
    """Cost over (wall) time, provider mix over bar time per policy, hit rate by provider
    and regime."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out: dict[str, Path] = {}
    if df.empty:
        return out
    # cost over time
    fig, ax = plt.subplots(figsize=(8, 4))
    t0 = df["done_at"].min()
    for pol, g in df.sort_values("done_at").groupby("policy"):
        ax.plot((g["done_at"] - t0) / 60.0, g["cost_usd"].cumsum(), label=pol)
    ax.set_xlabel("minutes since the first result")
    ax.set_ylabel("cumulative cost (USD)")
    ax.set_title("Cost over time")
    ax.legend()
    fig.tight_layout()
    out["cost_over_time"] = run_dir / PLOTS[0]
    fig.savefig(out["cost_over_time"], dpi=90)
    plt.close(fig)
    # provider mix over bar time
    ok = df[df["ok"]].copy()
    pols = sorted(df["policy"].unique())
    # One colour per provider across every subplot, so the mixes can be compared by eye.
    names = sorted(ok["provider"].dropna().unique())
    palette = plt.get_cmap("tab10").colors
    colours = [palette[i % len(palette)] for i in range(len(names))]
    fig, axes = plt.subplots(len(pols), 1, figsize=(8, 2.8 * len(pols)), squeeze=False)
    for ax, pol in zip(axes[:, 0], pols, strict=True):
        g = ok[ok["policy"] == pol]
        if not g.empty:
            bins = min(20, max(1, g["ts"].nunique()))
            g = g.assign(period=pd.cut(g["ts"].astype("int64"), bins, labels=False))
            mix = g.groupby(["period", "provider"]).size().unstack(fill_value=0)
            mix = mix.reindex(columns=names, fill_value=0)
            mix = mix.div(mix.sum(axis=1), axis=0)
            starts = g.groupby("period")["ts"].min()
            ax.stackplot(starts.loc[mix.index], mix.T.to_numpy(), labels=names, colors=colours)
            ax.legend(loc="upper left", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share")
        ax.set_title(f"Provider mix over bar time — {pol}")
    fig.tight_layout()
    out["provider_mix"] = run_dir / PLOTS[1]
    fig.savefig(out["provider_mix"], dpi=90)
    plt.close(fig)
    # hit rate by provider and regime
    hm = hit_rate_matrix(df)
    fig, ax = plt.subplots(figsize=(8, 4))
    if not hm.empty:
        hm.plot.bar(ax=ax, rot=0)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
    ax.set_ylabel("realized hit rate")
    ax.set_title("Hit rate by provider and regime")
    fig.tight_layout()
    out["hit_rate"] = run_dir / PLOTS[2]
    fig.savefig(out["hit_rate"], dpi=90)
    plt.close(fig)
    return out
