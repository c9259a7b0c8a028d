"""Config contract: the shipped file loads, bad files fail naming entry and key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from actors.config import DEFAULT_CONFIG, ConfigError, config_path, load_config, parse_config
from actors.core.keys import NEVER_MIX, MissingKeys, availability, never_mix
from actors.core.snapshot import Snapshot


def shipped() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_shipped_config_has_five_providers_with_real_prices():
    cfg = load_config()
    assert cfg.names == ["claude", "gemini", "gpt-4-turbo", "mixtral", "llama"]
    gpt = cfg.provider("gpt-4-turbo")
    assert (gpt.input_cost_per_mtok, gpt.output_cost_per_mtok) == (10.0, 30.0)
    assert (gpt.max_input_tokens, gpt.max_output_tokens) == (128_000, 4_096)
    claude = cfg.provider("claude")
    assert (claude.api, claude.input_cost_per_mtok, claude.output_cost_per_mtok) == ("anthropic", 3.0, 15.0)
    assert cfg.provider("gemini").api == "gemini"
    assert cfg.provider("mixtral").model == "open-mixtral-8x7b"


def test_a_missing_key_never_means_simulated(monkeypatch):
    cfg = load_config()
    assert cfg.simulator.mode == "never" and not cfg.simulate
    gpt = cfg.provider("gpt-4-turbo")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert not cfg.simulated(gpt)
    found = availability(gpt, cfg.simulate)
    assert found.missing_key and not found.simulated and not found.usable
    assert found.key_env == "OPENAI_API_KEY"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET")
    assert availability(gpt, cfg.simulate).usable and not cfg.simulated(gpt)
    assert "sk-test-SECRET" not in repr(gpt) + repr(availability(gpt, False))
    sim = cfg.simulating()
    assert sim.simulate and all(sim.simulated(p) for p in sim.providers)
    assert availability(gpt, True).simulated and not availability(gpt, True).missing_key


def test_auto_mode_is_refused_pointing_to_the_explicit_choices():
    data = shipped()
    data["simulator"]["mode"] = "auto"
    with pytest.raises(ConfigError) as info:
        parse_config(data, "old.yaml")
    msg = str(info.value)
    assert "simulator.mode: 'auto' was removed" in msg
    assert "'never'" in msg and "'always'" in msg and "--simulate" in msg


def test_missing_keys_error_names_provider_variable_and_the_way_out():
    cfg = load_config()
    gone = [availability(cfg.provider(n), False).model_copy(update={"missing_key": True})
            for n in ("claude", "gemini")]
    msg = str(MissingKeys(gone))
    assert "provider claude: $ANTHROPIC_API_KEY is not set" in msg
    assert "provider gemini: $GEMINI_API_KEY is not set" in msg
    assert "optional: true" in msg and "connect(simulate=True)" in msg


def test_optional_marker():
    data = shipped()
    data["providers"][1]["optional"] = True
    cfg = parse_config(data)
    assert cfg.provider("gemini").optional and not cfg.provider("claude").optional


def _snap(name: str, simulated: bool) -> Snapshot:
    return Snapshot(name=name, model=name, api="openai", input_cost_per_mtok=1,
                    output_cost_per_mtok=1, max_input_tokens=10, max_output_tokens=10,
                    simulated=simulated)


def test_never_mix_blocks_simulated_providers_next_to_real_ones():
    assert never_mix([_snap("a", False), _snap("b", False)]) == {}
    assert never_mix([_snap("a", True), _snap("b", True)]) == {}
    assert never_mix([_snap("a", False), _snap("b", True)]) == {"b": NEVER_MIX}


def test_state_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("LLM_ROUTER_STATE_DIR", raising=False)
    base = shipped()
    assert load_config().state_dir == str(Path("~/.cache/llm-router").expanduser())
    monkeypatch.setenv("LLM_ROUTER_STATE_DIR", str(tmp_path / "env"))
    cfg = parse_config(base)
    assert cfg.state_dir == str(tmp_path / "env")
    assert cfg.tracker.db_path == (tmp_path / "env" / "audit.sqlite3")
    # an explicit audit DB puts the state next to it (as before), an explicit state_dir wins
    cfg = parse_config({**base, "tracker": {"db_path": str(tmp_path / "db" / "x.sqlite3")}})
    assert cfg.state_dir == str(tmp_path / "db")
    cfg = parse_config({**base, "state_dir": str(tmp_path / "s")})
    assert cfg.state_path == tmp_path / "s"
    monkeypatch.chdir(tmp_path)
    rel = parse_config({**base, "state_dir": "rel"})
    assert rel.state_dir == str(tmp_path / "rel")  # absolute: actors elsewhere agree
    assert parse_config(rel.model_dump(mode="json")).state_dir == rel.state_dir
    moved = rel.with_state_dir(tmp_path / "other")
    assert moved.tracker.db_path == (tmp_path / "other" / "audit.sqlite3")


def test_config_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_ROUTER_CONFIG", str(tmp_path / "env.yaml"))
    assert config_path("cli.yaml").name == "cli.yaml"
    assert config_path(None).name == "env.yaml"
    monkeypatch.delenv("LLM_ROUTER_CONFIG")
    assert config_path(None) == DEFAULT_CONFIG


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["providers"][2].update(rpm=0), "providers[2] (gpt-4-turbo).rpm"),
        (lambda d: d["providers"][0].update(api="cohere"), "providers[0] (claude).api"),
        (lambda d: d["providers"][1].pop("model"), "providers[1] (gemini).model: Field required"),
        (lambda d: d["providers"][3].update(colour="red"), "providers[3] (mixtral).colour: unknown key"),
        (lambda d: d["providers"][4]["breaker"].update(failure_rate=2), "providers[4] (llama).breaker.failure_rate"),
        (lambda d: d["providers"][1].update(name="claude"), "duplicate provider name 'claude'"),
        (lambda d: d["providers"][0].update(base_url="ftp://x"), "providers[0] (claude).base_url"),
        (lambda d: d.update(providers=[]), "providers"),
    ],
)
def test_invalid_config_names_entry_and_key(mutate, expected):
    data = copy.deepcopy(shipped())
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.yaml")
    assert expected in str(info.value)
    assert "test.yaml" in str(info.value)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_cache_prices_and_thinking_budget_are_validated():
    cfg = load_config()
    claude, gemini = cfg.provider("claude"), cfg.provider("gemini")
    assert (claude.cached_input_cost_per_mtok, claude.cache_write_cost_per_mtok) == (0.30, 3.75)
    assert (gemini.cached_input_cost_per_mtok, gemini.thinking_budget) == (0.125, 1024)
    for key, value, words in (("cached_input_cost_per_mtok", -1, "Input should be greater than or equal to 0"),
                              ("thinking_budget", -5, "Input should be greater than or equal to -1"),
                              ("dialect", "cohere", "Input should be")):
        data = shipped()
        data["providers"][3][key] = value
        with pytest.raises(ConfigError, match=rf"providers\[3\] \(mixtral\)\.{key}: {words}"):
            parse_config(data)
    data = shipped()
    data["providers"][2]["thinking_budget"] = 512  # gpt-4-turbo
    with pytest.raises(ConfigError, match="thinking_budget: the OpenAI chat format has no"):
        parse_config(data)
