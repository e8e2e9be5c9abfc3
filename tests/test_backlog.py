"""The listen backlog (``gateway.backlog``, ``web.backlog``) reaches the listening socket."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory

from openclaw.config import ConfigError, build_config
from openclaw.gateway.service import GatewayService
from openclaw.listening import ListeningService, with_backlog
from openclaw.runtime import Runtime
from openclaw.web import WebService


def queue_of(port: int) -> int | None:
    """The Send-Q ``ss`` shows for a listening TCP socket: its backlog."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return int(rows[0][2]) if rows else None


@pytest.mark.parametrize("description, expected", [
    ("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1:backlog=77"),
    ("tcp6:0:interface=\\:\\:1", "tcp6:0:interface=\\:\\:1:backlog=77"),
    ("unix:/run/x.sock", "unix:/run/x.sock:backlog=77"),
    ("tcp:0:backlog=9", "tcp:0:backlog=9"),  # the operator's own backlog= wins
    ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),  # takes no backlog
])
def test_the_backlog_is_added_to_endpoints_that_take_one(description: str, expected: str) -> None:
    assert with_backlog(description, 77) == expected


def test_the_default_is_511_and_out_of_range_is_refused() -> None:
    config = build_config()
    assert (config.gateway.backlog, config.web.backlog) == (511, 511)
    for bad in (0, 70000, "many"):
        with pytest.raises(ConfigError, match="gateway.backlog"):
            build_config({"gateway": {"backlog": bad}})


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
@pytest_twisted.inlineCallbacks
def test_gateway_and_web_listen_with_the_configured_backlog(tmp_path) -> None:
    config = build_config({
        "gateway": {"listen": "tcp:0:interface=127.0.0.1", "backlog": 77, "token": "t" * 20},
        "web": {"listen": "tcp:0:interface=127.0.0.1", "backlog": 123},
    })
    runtime = Runtime(reactor)
    gateway = GatewayService(reactor, runtime, config.gateway, str(tmp_path / "gateway.token"), {})
    web = WebService(reactor, runtime, config.web.listen, limits=config.web)
    for service in (gateway, web):
        service.startService()
    try:
        assert queue_of(gateway.port.getHost().port) == 77
        assert queue_of(web.port.getHost().port) == 123
    finally:
        yield gateway.stopService()
        yield web.stopService()


@pytest_twisted.inlineCallbacks
def test_a_unix_listener_gets_the_backlog(tmp_path) -> None:
    service = ListeningService(reactor, f"unix:{tmp_path}/s.sock", Factory(), "web.listen", backlog=33)
    service.startService()
    try:
        assert service.port.backlog == 33
    finally:
        yield service.stopService()
