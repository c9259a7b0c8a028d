"""Outcome tables: one row per request, in stream order, with every provider's outcome.

Columns: the context columns (default: the configured context keys the file has, e.g.
`task`), `prompt` (text) or `prompt_tokens`, optionally `output_tokens` (or
`output_tokens_<provider>`), and one outcome column per provider, named after it, with
scores in [0, 1]. CSV or Parquet. Every problem is reported with the column and row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from actors.config import Config
from actors.core.contexts import check_context, configured_keys
from actors.core.tokens import estimate_tokens


class TableError(ValueError):
    """The outcome table cannot be used; the message names the column (and row)."""


@dataclass
class OutcomeTable:
    contexts: list[dict[str, str]]
    prompt_tokens: np.ndarray  # int per row
    output_tokens: dict[str, np.ndarray]  # provider → expected output tokens per row
    outcomes: dict[str, np.ndarray]  # provider → score per row
    request_ids: list[str]

    def __len__(self) -> int:
        return len(self.prompt_tokens)

    @property
    def providers(self) -> list[str]:
        return list(self.outcomes)


def read_frame(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise TableError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as exc:  # the reader's own message says what is wrong with the file
        raise TableError(f"{p}: cannot read as {'Parquet' if p.suffix == '.parquet' else 'CSV'}:"
                         f" {exc}") from None


def from_frame(df: pd.DataFrame, config: Config, *, context_cols: list[str] | None = None,
               providers: list[str] | None = None, default_output: int = 400) -> OutcomeTable:
    """Validate a frame against the configured providers (their prices are what it costs)."""
    if df.empty:
        raise TableError("the table has no rows")
    names = providers or [p for p in config.names if p in df.columns]
    if len(names) < 2:
        raise TableError(f"need outcome columns for at least two configured providers "
                         f"({', '.join(config.names)}); found {names or 'none'} among "
                         f"columns {list(df.columns)}")
    for n in names:
        if n not in config.names:
            raise TableError(f"provider {n!r} is not configured ({', '.join(config.names)})")
        if n not in df.columns:
            raise TableError(f"no outcome column {n!r}")
    outcomes = {}
    for n in names:
        col = pd.to_numeric(df[n], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(col) | (col < 0) | (col > 1))
        if len(bad):
            raise TableError(f"column {n!r} row {int(bad[0])}: outcome {df[n].iloc[bad[0]]!r} "
                             "is not a score within 0..1")
        outcomes[n] = col
    if "prompt_tokens" in df.columns:
        tokens = pd.to_numeric(df["prompt_tokens"], errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(tokens) | (tokens < 1))
        if len(bad):
            raise TableError(f"column 'prompt_tokens' row {int(bad[0])}: "
                             f"{df['prompt_tokens'].iloc[bad[0]]!r} is not a positive count")
        tokens = tokens.astype(int)
    elif "prompt" in df.columns:
        tokens = np.array([estimate_tokens(str(t)) for t in df["prompt"]], dtype=int)
    else:
        raise TableError("need a 'prompt' or a 'prompt_tokens' column")
    out = {}
    for n in names:
        col = f"output_tokens_{n}" if f"output_tokens_{n}" in df.columns else "output_tokens"
        if col in df.columns:
            v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
            if not np.isfinite(v).all() or (v < 0).any():
                raise TableError(f"column {col!r}: output tokens must be counts >= 0")
            out[n] = v
        else:
            out[n] = np.full(len(df), float(default_output))
    keys = context_cols if context_cols is not None else [
        k for k in configured_keys(config) if k in df.columns]
    for k in keys:
        if k not in df.columns:
            raise TableError(f"no context column {k!r}")
    raw = df[keys].astype(str).to_dict("records") if keys else [{} for _ in range(len(df))]
    contexts = []
    for i, c in enumerate(raw):
        try:
            contexts.append(check_context(c))
        except ValueError as exc:
            raise TableError(f"row {i}: {exc}") from None
    ids = ([str(x) for x in df["request_id"]] if "request_id" in df.columns
           else [f"row{i}" for i in range(len(df))])
    return OutcomeTable(contexts, tokens, out, outcomes, ids)
