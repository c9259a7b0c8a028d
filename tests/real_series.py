"""Real OHLCV series that ship inside packages, for the regime checks and scripts/bench_regime.py.

- `sp500`, `nasdaq`: daily 1999–2018, from `arch` (a runtime dependency, `prompts.load_sample`).
- `goog`: GOOG daily 2004–2013, a volatile single stock; `eurusd`: EURUSD hourly 2017–2018, a
  calm currency pair trading 24 h × 5 days. Both from `backtesting` (AGPL-3.0, so only in the
  `test` extra: the product never imports it).
- `vix_closes()`: the VIX close 2014–2019, from `arch`, to find the S&P 500's shock days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prompts.ohlcv import load_sample, normalize_ohlcv
from prompts.sessions import bars_per_year


@dataclass(frozen=True)
class RealSeries:
    name: str
    symbol: str
    timeframe: str
    session: str
    what: str

    @property
    def year(self) -> int:
        """Bars in a trading year of this series' session."""
        return round(bars_per_year(self.timeframe, self.session))


REAL_SERIES: dict[str, RealSeries] = {
    s.name: s
    for s in (
        RealSeries("sp500", "SPX", "1d", "equity", "S&P 500 daily 1999–2018"),
        RealSeries("nasdaq", "IXIC", "1d", "equity", "NASDAQ composite daily 1999–2018"),
        RealSeries("goog", "GOOG", "1d", "equity", "GOOG daily 2004–2013"),
        RealSeries("eurusd", "EURUSD", "1h", "fx", "EURUSD hourly 2017–2018"),
    )
}


def load_real(name: str) -> pd.DataFrame:
    """The normalized bars of one of `REAL_SERIES`."""
    if name in ("sp500", "nasdaq"):
        return load_sample(name)
    try:
        from backtesting import test as bt
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ModuleNotFoundError(
            "the goog / eurusd series ship in the 'backtesting' package (test extra): "
            "pip install backtesting"
        ) from exc
    return normalize_ohlcv({"goog": bt.GOOG, "eurusd": bt.EURUSD}[name])


def vix_closes() -> pd.Series:
    from arch.data import vix

    return vix.load()["vix"]


def shock_bars(close: pd.Series, year: int, k: float = 4.0, min_bars: int = 120) -> pd.Series:
    """True on each bar whose log return is beyond k standard deviations of the returns over
    the trailing year before it (expanding from `min_bars`)."""
    r = np.log(close).diff()
    sd = r.rolling(year, min_periods=min_bars).std().shift(1)
    return r.abs() > k * sd


def by_next_bar(flag: pd.Series) -> pd.Series:
    """True where `flag` holds on the bar or the one after it."""
    return flag | flag.shift(-1, fill_value=False)
