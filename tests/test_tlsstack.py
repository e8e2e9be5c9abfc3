"""
Which configurations keep the TLS stack out of the process, and letting it
in later (the fresh-interpreter side, with a real TLS connection, is in
``tests/test_imports.py``).
"""

from __future__ import annotations

import pytest

from openclaw.config import Config, ConfigError, build_config
from openclaw.system import tlsstack
from openclaw.system.tlsstack import OPENSSL, available, leave_unloaded, load, tls_users

MAILBOX = {"name": "me", "host": "127.0.0.1", "user": "me", "password": "secret-password"}

#: One TLS user of each kind, and the part of the config it is named by.
USERS = [
    ({"brain": {"providers": [{"kind": "openai", "model": "m", "api_key": "sk-test-0123456789"}]}}, "brain"),
    ({"brain": {"tools": ["get_status", "http_check"]}}, "brain"),
    ({"connectors": {"telegram": {"enabled": True, "token": "123:abc-token-0123456789"}}}, "connectors"),
    ({"checks": [{"name": "site", "type": "http", "target": "https://127.0.0.1:9/"}]}, "checks"),
    ({"mail": [MAILBOX]}, "mail"),
    ({"store": {"url": "redis://127.0.0.1:6379/0"}}, "store"),
    ({"gateway": {"listen": "ssl:18789:privateKey=k.pem:certKey=c.pem"}}, "gateway.listen"),
]


def test_the_embedded_default_and_plain_listeners_need_no_tls() -> None:
    assert tls_users(build_config()) == ()
    assert tls_users(build_config({"gateway": {"listen": "unix:/tmp/oc.sock"}, "web": {"listen": "tcp6:0"}})) == ()


def as_decided(document: dict) -> Config:
    """The config the TLS decision sees (a TLS listener's key files need not exist for it)."""
    seen: list[Config] = []
    try:
        build_config(document, before_endpoints=seen.append)
    except ConfigError:
        pass
    return seen[0]


@pytest.mark.parametrize("document,user", USERS)
def test_every_kind_of_tls_user_is_named(document, user) -> None:
    assert tls_users(as_decided(document)) == (user,)


def test_the_stack_is_kept_out_only_before_twisted_settles_it() -> None:
    modules: dict = {}
    assert leave_unloaded(build_config(), modules) and modules == {OPENSSL: None} and not available(modules)
    for settled in ({"twisted.internet.tcp": object()}, {OPENSSL: object()}):
        assert not leave_unloaded(build_config(), dict(settled)) and available(settled)
    assert not leave_unloaded(build_config(USERS[3][0]), modules := {}) and modules == {} and available(modules)


def test_the_decision_sees_the_config_before_its_endpoints_are_parsed() -> None:
    seen = []
    config = build_config({"gateway": {"listen": "tcp:0"}}, before_endpoints=seen.append)
    assert seen == [config]
    with pytest.raises(Exception, match="gateway.listen: expected an endpoint"):
        build_config({"gateway": {"listen": "bogus:1"}}, before_endpoints=seen.append)


def test_load_lets_the_stack_in_once_and_re_executes_the_endpoint_module(monkeypatch) -> None:
    reloaded = []
    monkeypatch.setattr(tlsstack.importlib, "reload", reloaded.append)
    endpoints = object()
    modules = {OPENSSL: None, "twisted.internet.endpoints": endpoints}
    assert load(modules) and available(modules) and OPENSSL not in modules and reloaded == [endpoints]
    assert not load(modules) and reloaded == [endpoints]
    assert not load({}) and reloaded == [endpoints]
