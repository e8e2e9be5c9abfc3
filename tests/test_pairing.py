"""Pairing end to end: an unknown sender's code, approved with ``openclaw pairing`` through the gateway."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from openclaw.connectors.access import Access
from tests import wsclient
from tests.daemon import RunningDaemon

OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")


def cli(daemon: RunningDaemon, *args: str):
    """Run the ``openclaw`` command in a thread: the daemon shares this reactor."""
    return deferToThread(subprocess.run, [
        OPENCLAW, *args, "--home", daemon.home, "--gateway", f"ws://127.0.0.1:{daemon.gateway_port}/",
    ], capture_output=True, text=True, timeout=60)


@pytest_twisted.inlineCallbacks
def test_list_approve_and_revoke_through_the_cli(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    store = daemon.service.getServiceNamed("store")
    gate = Access("telegram", (), True, 10, store, reactor)
    decision = yield gate.decide("4242", "4242", "Ann")
    code = decision.reply.split("approve ")[1].split()[0]
    listed = yield cli(daemon, "pairing", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{code}  telegram:4242  Ann" in listed.stdout
    wrong = yield cli(daemon, "pairing", "approve", "000000" if code != "000000" else "111111")
    assert wrong.returncode == 1 and "no live pairing request" in wrong.stderr
    approved = yield cli(daemon, "pairing", "approve", code)
    assert approved.returncode == 0 and approved.stdout.strip() == "approved telegram:4242"
    assert (yield gate.decide("4242", "4242")).verdict == "allowed"
    revoked = yield cli(daemon, "pairing", "revoke", "telegram:4242")
    assert revoked.stdout.strip() == "revoked telegram:4242"
    assert (yield gate.decide("4242", "4242")).verdict == "pairing"
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_bad_params_get_an_error_reply(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    bad_code = yield client.request("pairing.approve", {"code": "12ab"})
    bad_sender = yield client.request("pairing.revoke", {"sender": "nobody"})
    assert [bad_code["error"]["code"], bad_sender["error"]["code"]] == ["invalid_field", "invalid_field"]
    listing = yield client.request("pairing.list")
    assert listing["payload"] == {"pending": [], "approved": [], "allowed": []}
    yield client.close()
    yield daemon.stop()
