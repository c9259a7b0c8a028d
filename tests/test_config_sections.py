"""The router, tracker, budgets, serve, idempotency and cache sections are typed in `Config`: a bad file fails
at load, naming the file and the key, and the actors get the validated sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from actors.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from actors.core.budget import BudgetSpec
from actors.core.contexts import configured_keys
from actors.routing.router import RouterSpec
from actors.shells.tracker import TrackerSpec
from actors.stores.idempotency import IdempotencySpec
from actors.stores.response_cache import CacheSpec
from serve.spec import ServeSpec

BAD = [
    ("router", {"default_polcy": "cheapest"}, "router.default_polcy: unknown key"),
    ("router", {"default_timeout_s": 0}, "router.default_timeout_s: Input should be greater than 0"),
    ("router", {"learning": {"nope": 1}}, "router.learning.nope: unknown key"),
    ("tracker", {"window_sze": 10}, "tracker.window_sze: unknown key"),
    ("tracker", {"store_text": "gzip"}, "tracker.store_text: Input should be"),
    ("tracker", {"context_keys": ["regime", ""]}, "tracker.context_keys[1]: String should have"),
    ("budgets", {"hourly": 5}, "budgets.hourly: unknown key"),
    ("budgets", {"daily_usd": -1}, "budgets.daily_usd: Input should be greater than 0"),
    ("budgets", {"per_provider": {"claude": {"weekly_usd": 1}}},
     "budgets.per_provider.claude.weekly_usd: unknown key"),
    ("serve", {"max_body": 10}, "serve.max_body: unknown key"),
    ("serve", {"auth": {"anonymus": True}}, "serve.auth.anonymus: unknown key"),
    ("serve", {"max_timeout_s": 99999}, "serve.max_timeout_s: Input should be less than"),
    ("idempotency", {"window": 60}, "idempotency.window: unknown key"),
    ("idempotency", {"window_s": 0}, "idempotency.window_s: Input should be greater than 0"),
    ("idempotency", {"memory_entries": "lots"}, "idempotency.memory_entries: Input should be"),
    ("cache", {"size": 3}, "cache.size: unknown key"),
    ("cache", {"ttl_s": -1}, "cache.ttl_s: Input should be greater than 0"),
    ("cache", {"enabled": "maybe"}, "cache.enabled: Input should be a valid boolean"),
]


def _write(tmp_path: Path, section: str, value: object) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data[section] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("section,value,expected", BAD, ids=[e.split(":")[0] for _, _, e in BAD])
def test_a_bad_section_fails_at_load_naming_file_and_key(tmp_path, section, value, expected):
    path = _write(tmp_path, section, value)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_a_section_that_is_not_a_mapping_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\n  router: Input should be a valid dictionary"):
        load_config(_write(tmp_path, "router", ["default_policy"]))


def test_sections_are_typed_and_defaulted():
    cfg = load_config()
    assert isinstance(cfg.router, RouterSpec) and isinstance(cfg.tracker, TrackerSpec)
    assert isinstance(cfg.budgets, BudgetSpec) and isinstance(cfg.serve, ServeSpec)
    assert isinstance(cfg.idempotency, IdempotencySpec) and isinstance(cfg.cache, CacheSpec)
    bare = load_config(DEFAULT_CONFIG).model_dump(exclude_unset=True)
    for section in ("router", "budgets", "serve", "idempotency", "cache"):
        bare.pop(section, None)
    empty = parse_config(bare)
    assert empty.router == RouterSpec() and empty.serve == ServeSpec() and empty.budgets == BudgetSpec()
    assert empty.idempotency == IdempotencySpec() and empty.cache == CacheSpec()


def test_actors_get_the_validated_section_not_a_second_validation(tmp_path):
    path = _write(tmp_path, "tracker", {"context_keys": ["task", "regime"]})
    cfg = load_config(path)
    assert TrackerSpec.from_config(cfg) is cfg.tracker  # the loaded object itself
    assert configured_keys(cfg) == ("task", "regime")
    assert ServeSpec.from_config(cfg) is cfg.serve


def test_another_state_dir_keeps_the_sections(tmp_path):
    path = _write(tmp_path, "budgets", {"hourly_usd": 3.0})
    cfg = load_config(path)
    moved = cfg.with_state_dir(tmp_path / "other")
    assert moved.budgets == cfg.budgets and moved.router == cfg.router
    assert moved.budgets.model_dump(exclude_unset=True) == {"hourly_usd": 3.0}
    assert moved.tracker.db_path == tmp_path / "other" / "audit.sqlite3"
