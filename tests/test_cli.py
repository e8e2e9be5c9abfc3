"""The ``openclaw`` command: status, init, version."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from openclaw import __version__, cli
from openclaw.config import build_config

OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")


def test_version_from_the_installed_script() -> None:
    out = subprocess.run([OPENCLAW, "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == f"openclaw {__version__}"


def test_init_writes_config_and_heartbeat_once(tmp_path, capsys) -> None:
    home = tmp_path / "home"
    assert cli.main(["init", "--home", str(home)]) == 0
    config = home / "openclaw.yaml"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert build_config(yaml.safe_load(config.read_text())) == build_config()
    assert (home / "HEARTBEAT.md").read_text().startswith("# HEARTBEAT.md")
    (home / "HEARTBEAT.md").write_text("mine")
    assert cli.main(["init", "--home", str(home)]) == 0
    assert (home / "HEARTBEAT.md").read_text() == "mine"
    assert "kept existing" in capsys.readouterr().out


@pytest.mark.parametrize(
    "listen, url",
    [
        ("tcp:8080:interface=127.0.0.1", "http://127.0.0.1:8080/health"),
        ("tcp:9000", "http://127.0.0.1:9000/health"),
        ("tcp:9000:interface=0.0.0.0", "http://127.0.0.1:9000/health"),
    ],
)
def test_health_url_from_the_web_endpoint(listen, url) -> None:
    assert cli.health_url(listen) == url


def test_health_url_refuses_unix_sockets() -> None:
    with pytest.raises(ValueError, match="pass --url"):
        cli.health_url("unix:/run/openclaw.sock")


class Health(BaseHTTPRequestHandler):
    code = 200
    body = b'{"status": "ok", "uptime": 12.5, "memory": {"rss_bytes": 52428800, "peak_rss_bytes": 62914560}, ' \
           b'"services": {"gateway": "running"}, "connections": {"telegram": false}, "sessions": 2, "last_heartbeat": null}'

    def do_GET(self) -> None:
        self.send_response(self.code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("code, exit_status", [(200, 0), (503, 1)])
def test_status_prints_a_summary_and_exits_by_health(code, exit_status, capsys) -> None:
    handler = type("H", (Health,), {"code": code})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        status = cli.main(["status", "--url", f"http://127.0.0.1:{server.server_port}/health"])
    finally:
        thread.join(10)
        server.server_close()
    out = capsys.readouterr().out
    assert status == exit_status
    assert f"openclaw ok (HTTP {code}), up 12s" in out
    assert "50.0 MiB RSS" in out and "connector telegram: DOWN" in out and "service gateway: running" in out


def test_status_when_nothing_answers(capsys) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["status", "--url", f"http://127.0.0.1:{port}/health", "--timeout", "2"]) == 1
    assert "is not answering" in capsys.readouterr().err


def test_status_summary_shows_the_cluster_and_standby_connectors() -> None:
    body = {"status": "ok", "uptime": 5, "connections": {"telegram": False, "slack": False},
            "connectors": {"telegram": {"state": "standby"}, "slack": {"state": "backoff"}},
            "cluster": {"instance_id": "a:1:aaaaaa", "holds": ["scheduler"], "instances": [
                {"id": "a:1:aaaaaa", "holds": ["scheduler"]},
                {"id": "b:2:bbbbbb", "holds": ["connector:telegram:0123456789ab"]}]}}
    text = cli.summarize(200, body)
    assert "connector telegram: standby (another instance holds it)" in text and "connector slack: DOWN" in text
    assert "cluster: this instance a:1:aaaaaa" in text
    assert "instance a:1:aaaaaa: holds scheduler" in text
    assert "instance b:2:bbbbbb: holds connector:telegram:0123456789ab" in text
    alone = cli.summarize(200, {**body, "cluster": {"instance_id": "a:1:aaaaaa", "holds": ["scheduler"], "instances": []}})
    assert "cluster" not in alone
