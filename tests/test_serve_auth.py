"""The endpoint fails closed, without Ray: which configurations may start, where tokens come
from, and that no token ever reaches what Ray stores or shows."""

from __future__ import annotations

import pytest
from ray import cloudpickle

from actors.config import ConfigError, parse_config
from serve.auth import Access, AuthDigests, Verifier, digests, is_loopback, require_loopback
from serve.errors import ApiError
from serve.spec import AuthSpec
from tests.conftest import make_config

CLIENT, ADMIN = "client-Zq8w1xR4pT6yU2oI", "admin-Lk3jH5gF7dS9aQ1w"
ENV = {"LLM_ROUTER_API_TOKEN": CLIENT, "LLM_ROUTER_ADMIN_TOKEN": ADMIN}


def test_no_client_token_refuses_and_names_the_settings():
    with pytest.raises(ConfigError) as info:
        digests(AuthSpec(), env={})
    msg = str(info.value)
    assert "serve.auth.anonymous" in msg and "$LLM_ROUTER_API_TOKEN" in msg
    assert "serve.auth.token_file" in msg
    with pytest.raises(ConfigError, match=r"\$MY_TOKEN"):
        digests(AuthSpec(token_env="MY_TOKEN"), env={"LLM_ROUTER_API_TOKEN": CLIENT})


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.10", False),
    ("example.com", False), (None, False), ("", False),
])
def test_anonymous_only_on_a_loopback_address(host, ok):
    anon = digests(AuthSpec(anonymous=True), env={})
    assert anon.anonymous and anon.client is None and anon.admin is None
    assert is_loopback(host) is ok
    if ok:
        require_loopback(anon, host)
    else:
        with pytest.raises(ConfigError, match=r"serve\.auth\.anonymous"):
            require_loopback(anon, host)
    require_loopback(digests(AuthSpec(), env=ENV), host)  # with a token: any address


def test_a_token_wins_over_anonymous():
    d = digests(AuthSpec(anonymous=True), env=ENV)
    assert not d.anonymous
    with pytest.raises(ApiError):
        Verifier.from_digests(d).check(None, Access.CLIENT)


def test_token_files_must_be_private(tmp_path):
    f = tmp_path / "token"
    f.write_text(CLIENT + "\n")
    f.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        digests(AuthSpec(token_file=str(f)), env={})
    assert str(f) in str(info.value) and "0644" in str(info.value)
    assert "chmod 600" in str(info.value)
    f.chmod(0o640)
    with pytest.raises(ConfigError, match="group or others"):
        digests(AuthSpec(token_file=str(f)), env={})
    f.chmod(0o600)
    d = digests(AuthSpec(token_file=str(f)), env={"LLM_ROUTER_API_TOKEN": "x" * 20})
    v = Verifier.from_digests(d)
    v.check(CLIENT, Access.CLIENT)  # the file's token (newline stripped), not the variable's
    with pytest.raises(ApiError):
        v.check("x" * 20, Access.CLIENT)
    with pytest.raises(ConfigError, match="cannot read"):
        digests(AuthSpec(token_file=str(tmp_path / "missing")), env={})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        digests(AuthSpec(token_file=str(empty)), env={})


def test_weak_or_shared_tokens_are_refused():
    with pytest.raises(ConfigError, match="at least 16"):
        digests(AuthSpec(), env={"LLM_ROUTER_API_TOKEN": "short"})
    with pytest.raises(ConfigError, match="without spaces"):
        digests(AuthSpec(), env={"LLM_ROUTER_API_TOKEN": "has a space in it ok"})
    with pytest.raises(ConfigError, match="must differ"):
        digests(AuthSpec(), env={"LLM_ROUTER_API_TOKEN": CLIENT, "LLM_ROUTER_ADMIN_TOKEN": CLIENT})


def test_only_keyed_macs_leave_the_builder(tmp_path):
    """What Ray stores and shows (deployment arguments and options, runtime_env) holds no
    token; the same token gets a different MAC in every build."""
    from serve.app import application
    from serve.run import app_schema, deployment_options, load_serve_config

    a, b = digests(AuthSpec(), env=ENV), digests(AuthSpec(), env=ENV)
    assert a.client != b.client and a.salt != b.salt
    dumped = a.model_dump_json()
    assert CLIENT not in dumped and ADMIN not in dumped
    cfg = parse_config(make_config(tmp_path))
    opts = deployment_options(app_schema(load_serve_config()))
    built = application(cfg, a, **opts)
    blob = cloudpickle.dumps(built)
    assert CLIENT.encode() not in blob and ADMIN.encode() not in blob
    assert "runtime_env" not in str(opts)
    assert AuthDigests.model_validate(a.model_dump()) == a


def test_building_the_app_without_a_token_fails_before_any_replica(tmp_path, monkeypatch):
    from serve.app import application

    monkeypatch.delenv("LLM_ROUTER_API_TOKEN", raising=False)
    cfg = parse_config(make_config(tmp_path))
    with pytest.raises(ConfigError, match=r"serve\.auth\.anonymous"):
        application(cfg)
    anon = parse_config(make_config(tmp_path, serve={"auth": {"anonymous": True}}))
    assert application(anon) is not None


def test_every_replica_refuses_anonymous_on_a_public_address(tmp_path, monkeypatch):
    """`serve run` / `serve deploy` never pass through `llm-router serve`'s check: the
    replica itself looks at the address Serve listens on."""
    from serve import app as app_module

    cfg = parse_config(make_config(tmp_path, serve={"auth": {"anonymous": True}}))
    ours = app_module.RouterIngress.func_or_class.__mro__[1]  # under Serve's ASGI wrapper
    assert ours.__module__ == "serve.app"
    # Serve keeps its own copy of the class; patch the globals that copy sees
    monkeypatch.setitem(ours.__init__.__globals__, "_bind_host", lambda: "0.0.0.0")
    with pytest.raises(ConfigError, match=r"serve\.auth\.anonymous.*'0\.0\.0\.0'"):
        ours.__init__(object.__new__(ours), cfg,
                      digests(AuthSpec(anonymous=True), env={}).model_dump())
