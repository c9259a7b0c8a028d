"""Market sessions: how many bars of a timeframe make a trading year, per kind of market.

Annualized volatility is √(bars a year) × per-bar volatility, and "a year of bars" also sizes the
regime rule's baseline window. Markets trade different hours: equities 6.5 h × 252 days, FX
24 h × 5 days a week (260 days), crypto 24 h × 7 days (365 days). Annualizing hourly FX bars
with the equity session understates its volatility by √(6240 / 1638) ≈ 1.95×.

Which session a symbol trades in is the caller's to say (`RegimeRules.session`, or glob patterns
in `RegimeRules.sessions`, both settable in the config file's `regime:` section); the default is
`equity`, as before sessions existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Literal, get_args

Session = Literal["equity", "fx", "crypto"]
SESSIONS: tuple[str, ...] = get_args(Session)

#: Trading days a year per session.
DAYS_PER_YEAR: dict[str, int] = {"equity": 252, "fx": 260, "crypto": 365}

#: Bars a year per session and timeframe. Equity rows count bars that start in a 6.5 h session
#: (a 4 h session has two: 09:30 and 13:30); weekly bars are 52 a year everywhere.
BARS_PER_YEAR: dict[str, dict[str, float]] = {
    "equity": {
        "1m": 252 * 390,
        "5m": 252 * 78,
        "15m": 252 * 26,
        "30m": 252 * 13,
        "1h": 252 * 6.5,
        "4h": 252 * 2,
        "1d": 252,
        "1w": 52,
    },
    **{
        session: {
            "1m": days * 1440,
            "5m": days * 288,
            "15m": days * 96,
            "30m": days * 48,
            "1h": days * 24,
            "4h": days * 6,
            "1d": days,
            "1w": 52,
        }
        for session, days in (("fx", DAYS_PER_YEAR["fx"]), ("crypto", DAYS_PER_YEAR["crypto"]))
    },
}


def bars_per_year(timeframe: str, session: str = "equity") -> float:
    """Bars of `timeframe` in a trading year of `session` (KeyError names the bad value)."""
    if session not in BARS_PER_YEAR:
        raise KeyError(f"unknown session {session!r}; one of {list(SESSIONS)}")
    table = BARS_PER_YEAR[session]
    if timeframe not in table:
        raise KeyError(f"unknown timeframe {timeframe!r}; one of {list(table)}")
    return table[timeframe]


def session_for(symbol: str | None, patterns: Mapping[str, str], default: str) -> str:
    """The session of the first pattern (shell glob, case-insensitive) matching `symbol`, in the
    mapping's order; `default` when none does (or no symbol is known)."""
    if symbol:
        upper = symbol.upper()
        for pattern, session in patterns.items():
            if fnmatchcase(upper, pattern.upper()):
                return session
    return default
