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


def test_a_local_instance_runs_its_workers_at_normal_priority(seen, monkeypatch):
    """Ray's default niceness (15) put every actor of a request's path at background
    priority: any busy process on the machine took the CPU from each hop."""
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    with pytest.raises(Stop):
        api.connect()
    assert seen[0]["_system_config"] == {"worker_niceness": 0}
    with pytest.raises(Stop):  # the caller's other settings are kept, its choice wins
        api.connect(_system_config={"worker_niceness": 5, "event_stats": False})
    assert seen[1]["_system_config"] == {"worker_niceness": 5, "event_stats": False}


def test_the_environment_or_a_running_cluster_decides_the_niceness(seen, monkeypatch):
    monkeypatch.setenv("RAY_worker_niceness", "10")
    with pytest.raises(Stop):
        api.connect()
    assert "_system_config" not in seen[0]
    monkeypatch.delenv("RAY_worker_niceness")
    with pytest.raises(Stop):
        api.connect("auto")  # joining: the cluster was started with its own
    assert "_system_config" not in seen[1]
