"""The command line as people type it: options after the subcommand, and `llm-router serve`
refusing unsafe settings before it starts anything."""

from __future__ import annotations

import pytest
import yaml

from actors.cli import build_parser, main
from actors.config import DEFAULT_CONFIG, ENV_CONFIG
from tests.conftest import make_config


@pytest.fixture(autouse=True)
def _own_config_env(monkeypatch):
    """`main` exports --config as $LLM_ROUTER_CONFIG (for Ray workers); keep it in here."""
    monkeypatch.setenv(ENV_CONFIG, str(DEFAULT_CONFIG))


@pytest.mark.parametrize("argv, config", [
    (["serve", "--config", "a.yaml"], "a.yaml"),
    (["serve", "--config=a.yaml", "--port", "9000"], "a.yaml"),
    (["--config", "b.yaml", "serve"], "b.yaml"),
    (["--config", "b.yaml", "serve", "--config", "c.yaml"], "c.yaml"),  # the later one wins
    (["serve"], None),
    (["demo", "--config", "d.yaml"], "d.yaml"),
    (["backtest", "--data", "sample:sp500", "--config", "e.yaml"], "e.yaml"),
])
def test_config_is_taken_before_or_after_the_subcommand(argv, config):
    assert build_parser().parse_args(argv).config == config


def test_sim_keeps_its_own_options(monkeypatch):
    seen = {}
    import actors.simulator.__main__ as sim_main

    monkeypatch.setattr(sim_main, "main", lambda rest: seen.setdefault("rest", rest) and 0)
    main(["--config", "sim", "sim", "--port", "0"])  # a config file named "sim" is not the command
    assert seen["rest"] == ["--port", "0"]


def _config(tmp_path, **serve) -> str:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(make_config(tmp_path, serve=serve)))
    return str(path)


def test_serve_refuses_to_start_without_a_client_token(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LLM_ROUTER_API_TOKEN", raising=False)
    assert main(["serve", "--config", _config(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve without a client token" in err
    assert "serve.auth.anonymous" in err and "$LLM_ROUTER_API_TOKEN" in err


def test_serve_refuses_anonymous_beyond_loopback(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LLM_ROUTER_API_TOKEN", raising=False)
    cfg = _config(tmp_path, auth={"anonymous": True})
    assert main(["serve", "--config", cfg, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "serve.auth.anonymous" in err and "'0.0.0.0'" in err


def test_serve_refuses_a_port_in_use_before_starting_ray(tmp_path, monkeypatch, capsys):
    import socket

    monkeypatch.setenv("LLM_ROUTER_API_TOKEN", "cli-test-token-0123456789")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--config", _config(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "--port" in err
