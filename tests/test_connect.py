"""Which Ray `connect()` asks for, without starting one."""

from __future__ import annotations

import pytest

import actors.api as api


class Stop(Exception):
    pass


@pytest.fixture
def seen(monkeypatch):
    calls: list[dict] = []

    def fake_init(**kw):
        calls.append(kw)
        raise Stop

    monkeypatch.setattr(api.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(api.ray, "init", fake_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


def test_default_is_a_new_local_instance_not_whatever_ray_start_left(seen):
    with pytest.raises(Stop):
        api.connect()
    assert seen[0]["address"] == "local" and seen[0]["namespace"] == "llm-router"
    assert seen[0]["include_dashboard"] is True  # the dashboard users were promised


def test_the_dashboard_can_be_turned_off(seen):
    from actors.caller.dashboard import ray_init_options

    with pytest.raises(Stop):
        api.connect(**ray_init_options(False))
    assert seen[0]["include_dashboard"] is False


def test_ray_address_from_the_environment_wins(seen, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    with pytest.raises(Stop):
        api.connect()
    assert seen[0]["address"] == "10.0.0.5:6379" and "include_dashboard" not in seen[0]


def test_no_dashboard_choice_is_passed_when_joining_a_cluster(seen):
    from actors.caller.dashboard import ray_init_options

    with pytest.raises(Stop):
        api.connect("ray://head:10001", **ray_init_options(False))
    assert "include_dashboard" not in seen[0]  # it would mean nothing there


def test_explicit_address_is_kept(seen):
    with pytest.raises(Stop):
        api.connect("ray://head:10001")
    assert seen[0]["address"] == "ray://head:10001"
