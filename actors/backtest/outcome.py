"""Realized outcomes: what happened after a bar, and the 0..1 score an answer earns.

The data already holds the future of every bar, so the score is known as soon as the answer
is; the runner still *sends* it only once the run has dispatched the bar `horizon` bars
later (see `feedback.py`), so a policy never learns from an outcome it could not have seen.

Scoring, with `fwd` = close[i + horizon] / close[i] − 1:

* trade signal (tasks analysis, pattern): long is right when fwd > 0, short when fwd < 0,
  flat when |fwd| < flat_threshold. 1.0 right, 0.0 wrong — the realized hit rate.
* risk assessment: a long entered at the close with the recommended `stop_distance` below
  it; 1.0 if the lowest low of the next `horizon` bars stayed above that stop (the stop
  held), else 0.0. It rewards stops that fit the realized volatility; a very wide stop
  also holds, so read it next to the recommended size.

Bars whose horizon runs past the end of the data have no outcome (NaN), and get no feedback.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SIGNAL_TASKS = frozenset({"analysis", "pattern"})


def forward_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """close[i + h] / close[i] − 1, NaN where i + h is past the end."""
    close = np.asarray(close, dtype=float)
    out = np.full(close.shape, np.nan)
    if horizon < len(close):
        out[: len(close) - horizon] = close[horizon:] / close[: len(close) - horizon] - 1.0
    return out


def adverse_excursion(close: np.ndarray, low: np.ndarray, horizon: int) -> np.ndarray:
    """min(low[i+1 .. i+h]) / close[i] − 1 (≤ 0 for a loss), NaN where i + h is past the end."""
    close = np.asarray(close, dtype=float)
    low = np.asarray(low, dtype=float)
    n = len(close)
    out = np.full(n, np.nan)
    if horizon >= n:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(low[1:], horizon)  # rows i = low[i+1..i+h]
    out[: n - horizon] = windows[: n - horizon].min(axis=1) / close[: n - horizon] - 1.0
    return out


def signal_score(direction: str, fwd: float, flat_threshold: float) -> float | None:
    """1.0 if the call matched the realized move, 0.0 if not, None if unknown."""
    if fwd is None or not math.isfinite(fwd):
        return None
    if direction == "long":
        return 1.0 if fwd > 0 else 0.0
    if direction == "short":
        return 1.0 if fwd < 0 else 0.0
    if direction == "flat":
        return 1.0 if abs(fwd) < flat_threshold else 0.0
    return None


def stop_score(stop_distance: float, close: float, adverse: float) -> float | None:
    """1.0 if a long's stop `stop_distance` below `close` was not touched, else 0.0."""
    if adverse is None or not math.isfinite(adverse) or close <= 0:
        return None
    return 1.0 if close * (1.0 + adverse) > close - stop_distance else 0.0


def score(task: str, parsed: dict[str, Any] | None, *, fwd: float, adverse: float,
          close: float, flat_threshold: float) -> float | None:
    """The outcome score of one validated answer (None: no answer or no outcome yet)."""
    if not parsed:
        return None
    if task in SIGNAL_TASKS:
        return signal_score(str(parsed.get("direction")), fwd, flat_threshold)
    if task == "risk":
        dist = parsed.get("stop_distance")
        return stop_score(float(dist), close, adverse) if isinstance(dist, int | float) else None
    return None
