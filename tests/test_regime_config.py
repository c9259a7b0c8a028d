"""The config file's `regime:` section: validated at load, and it reaches every place contexts
are built from bars (Python API `analyze`, HTTP `/v1/analyze`, backtests)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import actors.api as api
import actors.caller.client as client
import actors.shells.ray_calls as ray_calls
from actors.config import ConfigError, load_config, parse_config
from prompts import RegimeRules, load_sample
from serve import native
from tests.conftest import make_config

SHOCK_DAY = "2018-02-05"  # S&P 500 −4.1 %: high_volatility under the default rule


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_sample("sp500").loc[:SHOCK_DAY].iloc[-300:]


def _config(tmp_path, **regime):
    return parse_config(make_config(tmp_path, regime=regime))


def test_shipped_regime_section_documents_the_defaults():
    rules = load_config().regime
    assert rules.model_dump(exclude={"sessions"}) == RegimeRules().model_dump(exclude={"sessions"})
    assert rules.for_symbol("EURUSD").session == "fx"
    assert rules.for_symbol("btc-usd").session == "crypto"
    assert rules.for_symbol("SPX").session == "equity"


@pytest.mark.parametrize(("regime", "message"), [
    ({"high_vol_ratio": 0.5}, "regime.high_vol_ratio: Input should be greater than 1"),
    ({"min_dwel": 3}, "regime.min_dwel: unknown key"),
    ({"sessions": {"EURUSD": "forex"}}, "regime.sessions.EURUSD: Input should be 'equity'"),
    ({"session": "24/7"}, "regime.session: Input should be 'equity'"),
    ({"high_vol_threshold": 0.35}, "regime: high_vol_threshold .* replaced by high_vol_ratio"),
    ({"baseline_bars": 60}, "regime: .*baseline_bars .60. must be at least baseline_min_bars"),
])
def test_bad_regime_section_names_the_key(tmp_path, regime, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, **regime)


def test_python_api_analyze_builds_contexts_with_the_configured_rule(tmp_path, bars, monkeypatch):
    monkeypatch.setattr(ray_calls, "get", lambda request: request)  # hand back what would be routed
    monkeypatch.setattr(client, "as_model", lambda request, cls: request)
    handles = SimpleNamespace(router=SimpleNamespace(route=SimpleNamespace(remote=lambda r: r)))

    def regime(cfg) -> str:
        return api.RouterClient(handles, cfg).analyze(bars, symbol="SPX", timeframe="1d") \
            .context["regime"]

    assert regime(_config(tmp_path)) == "high_volatility"
    assert regime(_config(tmp_path, high_vol_ratio=50)) != "high_volatility"


def _http(bars: pd.DataFrame, symbol: str = "SPX") -> native.AnalyzeRequest:
    rows = [{"timestamp": ts.isoformat(), **row} for ts, row in
            zip(bars.index, bars.to_dict("records"), strict=True)]
    return native.AnalyzeRequest(bars=rows, symbol=symbol, timeframe="1d")


def test_http_analyze_builds_contexts_with_the_configured_rule(tmp_path, bars):
    def regime(cfg) -> str:
        return native.route_request(_http(bars), "analysis", cfg, None).context["regime"]

    assert regime(_config(tmp_path)) == "high_volatility"
    assert regime(_config(tmp_path, high_vol_ratio=50)) != "high_volatility"


def test_http_analyze_annualizes_with_the_symbols_configured_session(tmp_path, bars):
    cfg = _config(tmp_path, sessions={"SPX": "crypto"})

    def vol(symbol: str) -> float:
        return native.market_context(_http(bars, symbol), cfg.regime).indicators.realized_vol

    assert vol("SPX") == pytest.approx(vol("NDX") * np.sqrt(365 / 252))
