"""Config contract: the shipped file loads, bad files fail naming entry and key."""

from __future__ import annotations

import copy

import pytest
import yaml

from actors.config import DEFAULT_CONFIG, ConfigError, config_path, load_config, parse_config


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


def test_simulated_unless_key_set(monkeypatch):
    cfg = load_config()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert cfg.simulated(cfg.provider("gpt-4-turbo"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET")
    assert not cfg.simulated(cfg.provider("gpt-4-turbo"))
    assert "sk-test-SECRET" not in repr(cfg.provider("gpt-4-turbo"))


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
