"""``openclaw checks``, ``alerts``, ``heartbeat`` and ``report`` against a running daemon."""

from __future__ import annotations

import os

import pytest_twisted
from twisted.internet import protocol, reactor

from openclaw.config import build_config
from tests.daemon import RunningDaemon
from tests.waiting import until
from tests.test_pairing import cli


@pytest_twisted.inlineCallbacks
def test_checks_heartbeat_and_report_commands(tmp_path) -> None:
    # A port nothing listens on: the check fails at once and alerts.
    closed = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    port = closed.getHost().port
    yield closed.stopListening()
    config = build_config({
        "gateway": {"listen": "tcp:0:interface=127.0.0.1"}, "web": {"listen": "tcp:0:interface=127.0.0.1"},
        "checks": [{"name": "db", "type": "tcp", "target": f"127.0.0.1:{port}", "every": "0.05s", "fail_after": 1}],
    })
    daemon = RunningDaemon(str(tmp_path), config)  # stopped by the conftest if the test fails
    checks = daemon.service.getServiceNamed("checks")
    yield until(lambda: any(s["alerting"] for s in checks.states()), what="the check alerting")
    listed = yield cli(daemon, "checks")
    assert listed.returncode == 1, listed.stderr
    assert listed.stdout.startswith("db") and "DOWN" in listed.stdout and "alerted" in listed.stdout

    alerts = yield cli(daemon, "alerts", "--since", "1h")
    assert alerts.returncode == 0, alerts.stderr
    assert "[alert] db: db is DOWN" in alerts.stdout
    bad = yield cli(daemon, "alerts", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr

    status = yield cli(daemon, "heartbeat", "status")
    assert status.returncode == 0 and "on time" in status.stdout and "every: 30m" in status.stdout
    beat = yield cli(daemon, "heartbeat", "now")
    assert beat.returncode == 0, beat.stdout + beat.stderr
    assert beat.stdout.startswith("verdict: ")
    assert "checked:\n  - checks: 1 configured" in beat.stdout
    (tmp_path / "HEARTBEAT.md").write_text("- Is the backup fresh?\n")
    beat = yield cli(daemon, "heartbeat", "now")
    assert "HEARTBEAT.md items not acted on without a model:\n  - Is the backup fresh?" in beat.stdout
    assert "no model is configured" in beat.stdout

    missing = yield cli(daemon, "report")
    assert missing.returncode == 1 and "no report for any day yet" in missing.stderr
    os.makedirs(tmp_path / "reports")
    (tmp_path / "reports" / "2026-11-23.md").write_text("# Report for 2026-11-23\n\nAll quiet.\n")
    report = yield cli(daemon, "report", "2026-11-23")
    assert report.returncode == 0 and report.stdout == "# Report for 2026-11-23\n\nAll quiet.\n"
    yield daemon.stop()
