"""Backtests at cluster scale: OHLCV bars → routed, validated signals → Parquet → report.

See `runner.py` for the flow, `fanout.py` for the in-flight window, `store.py` and
`recover.py` for resuming, `outcome.py` and `feedback.py` for realized-outcome scores.
"""

from actors.backtest.runner import (
    BacktestOutcome,
    Prepared,
    arun_backtest,
    prepare,
    request_id,
    run_backtest,
)
from actors.backtest.spec import BacktestError, BacktestSpec, SeriesSpec

__all__ = [
    "BacktestError",
    "BacktestOutcome",
    "BacktestSpec",
    "Prepared",
    "SeriesSpec",
    "arun_backtest",
    "prepare",
    "request_id",
    "run_backtest",
]
