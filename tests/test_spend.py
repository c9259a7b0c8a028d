"""Cost summaries aggregated in SQL over a bounded window (actors/stores/spend.py), on a real store."""

from __future__ import annotations

import pandas as pd
import pytest

from actors.core.records import AttemptRecord
from actors.stores.audit import AuditStore
from actors.stores.spend import (
    MAX_PERIODS,
    WindowError,
    as_unix,
    cost_per_token,
    cost_summary,
    window,
)

NOW = 1_700_000_000.0  # 800 s into its UTC hour
ROWS = [  # (ts, request, provider, in, out, usd, simulated); r2 took two attempts
    (NOW - 30 * 3600, "r1", "claude", 1000, 200, 0.30, False),
    (NOW - 5 * 3600, "r2", "claude", 1000, 200, 0.30, False),
    (NOW - 5 * 3600 + 1, "r2", "gpt", 1000, 300, 0.10, False),
    (NOW - 1800, "r3", "gpt", 2000, 500, 0.20, False),
    (NOW - 60, "r4", "claude", 500, 100, 0.15, False),
    (NOW - 30, "s1", "claude", 400, 100, 2.10, True),  # the demo's made-up spend
]


@pytest.fixture
def store(backend) -> AuditStore:
    """The same rows on each backend: every summary below must agree on both."""
    s = backend()
    s.write_batch([AttemptRecord(request_id=r, attempt=1 if r != "r2" or p == "claude" else 2,
                                 ts=ts, provider=p, model=f"{p}-model", ok=True,
                                 input_tokens=i, output_tokens=o, cost_usd=c, simulated=sim)
                   for ts, r, p, i, o, c, sim in ROWS])
    return s


@pytest.mark.parametrize("by", ["hour", "day"])
def test_summary_sums_to_the_window_total(store: AuditStore, by: str) -> None:
    s = cost_summary(store, by, since=NOW - 40 * 3600, now=NOW)
    assert s.index.names == ["period", "provider", "model", "simulated"]
    real = s.xs(False, level="simulated")
    assert real["cost_usd"].sum() == pytest.approx(1.05)
    assert real["attempts"].sum() == 5 and real["input_tokens"].sum() == 5500
    assert s.xs(True, level="simulated")["cost_usd"].sum() == pytest.approx(2.10)
    if by == "hour":
        periods = s.index.get_level_values("period")
        assert set(periods.minute) == {0} and str(periods.tz) == "UTC"
        assert len(real) == 5


def test_default_window_is_recent_not_the_whole_table(store: AuditStore) -> None:
    hourly = cost_summary(store, "hour", now=NOW)  # last 2 days: r1 at -30 h is inside
    assert hourly.xs(False, level="simulated")["attempts"].sum() == 5
    assert cost_summary(store, "hour", since=NOW - 3600, now=NOW)["attempts"].sum() == 3
    old = cost_summary(store, "hour", until=NOW - 10 * 3600, now=NOW)
    assert old["attempts"].sum() == 1  # only r1


def test_since_until_accept_iso_and_datetimes(store: AuditStore) -> None:
    iso = pd.Timestamp(NOW - 3600, unit="s", tz="UTC").isoformat()
    a = cost_summary(store, "day", since=iso, until=NOW + 1, now=NOW)
    b = cost_summary(store, "day", since=NOW - 3600, until=str(NOW + 1), now=NOW)
    c = cost_summary(store, "day", since=pd.Timestamp(NOW - 3600, unit="s").to_pydatetime(),
                     until=NOW + 1, now=NOW)  # naive = UTC
    assert a.equals(b) and a.equals(c) and a["attempts"].sum() == 3


@pytest.mark.parametrize("kw, param", [
    ({"by": "week"}, "by"),
    ({"since": "yesterday-ish"}, "since"),
    ({"until": "nan"}, "until"),
    ({"since": NOW, "until": NOW - 1}, "since"),
    ({"since": 0.0, "until": NOW}, "since"),  # 54 years of hours
])
def test_bad_windows_name_the_argument(kw: dict, param: str) -> None:
    with pytest.raises(WindowError) as info:
        window(kw.pop("by", "hour"), **kw, now=NOW)
    assert info.value.param == param


def test_longest_window_allowed() -> None:
    assert window("hour", NOW - MAX_PERIODS * 3600, NOW) == (NOW - MAX_PERIODS * 3600, NOW)
    assert as_unix(None, "since") is None and as_unix("12.5", "since") == 12.5


def test_empty_store_gives_empty_frames(backend) -> None:
    s = backend("e.db")
    assert cost_summary(s, "hour", now=NOW).empty and cost_per_token(s, now=NOW).empty


def test_cost_per_token(store: AuditStore) -> None:
    c = cost_per_token(store, since=NOW - 40 * 3600, now=NOW)
    gpt = c.loc[("gpt", "gpt-model")]
    assert gpt["tokens"] == 3800
    assert gpt["usd_per_1k_tokens"] == pytest.approx(0.30 / 3.8)
