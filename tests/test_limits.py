"""
Hostile clients against a real ``twistd openclaw`` process: memory stays
bounded (peak RSS measured by the kernel), refusals come early, and after
each case a normal ``chat.send`` is acknowledged and answered and ``/livez``
is 200.  Every flood is bounded and stops by itself.
"""

from __future__ import annotations

import os
import urllib.request

import orjson
import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer

from tests import hostile, wsclient
from tests.process import DaemonProcess, free_port

TOKEN = "limits-test-token-0123456789"
MiB = 1024 * 1024
PING_FLOOD = b"".join(hostile.request_frame("ping", str(n)) for n in range(400_000))


# The WhatsApp webhook checks its signature before anything else; its Graph API
# is a closed port, so the connector never gets further than that check.
WHATSAPP = orjson.dumps({"enabled": True, "token": "t", "phone_number_id": "1", "app_secret": "app-secret",
                         "api_url": f"http://127.0.0.1:{free_port()}/v21.0"}).decode()


@pytest.fixture
def daemon(tmp_path):
    process = DaemonProcess(tmp_path, str(tmp_path / "home"), OPENCLAW_GATEWAY_TOKEN=TOKEN,
                            OPENCLAW_WEB_REQUEST_TIMEOUT="2s", OPENCLAW_CONNECTORS_WHATSAPP=WHATSAPP)
    process.start()
    yield process
    process.ensure_dead()


def livez(daemon: DaemonProcess) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web}/livez", timeout=10) as response:
        return response.status


def metric(daemon: DaemonProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@defer.inlineCallbacks
def still_serves(daemon: DaemonProcess):
    """A normal client still gets its ``chat.send`` acknowledged and answered; ``/livez`` is 200."""
    client = yield wsclient.connect(daemon.gateway, TOKEN)
    yield client.request("subscribe", {})
    ack = yield client.request("chat.send", {"text": "/help"})
    assert ack["ok"], ack
    while True:
        frame = yield client.next()
        if frame.get("type") == "event" and frame["event"] == "chat.reply":
            assert frame["payload"]["reply_to"] == ack["payload"]["event_id"]
            break
    yield client.close()
    assert livez(daemon) == 200


@defer.inlineCallbacks
def baseline(daemon: DaemonProcess):
    """The daemon's RSS once it has served one chat round trip (so lazy set-up is paid for)."""
    yield still_serves(daemon)
    return hostile.rss(daemon.process.pid)


@pytest_twisted.inlineCallbacks
def test_a_ping_flood_before_connect_is_not_read(daemon) -> None:
    before = yield baseline(daemon)
    sock, head = hostile.ws_open(daemon.gateway)
    assert head.startswith(b"HTTP/1.1 101")
    taken = hostile.flood(sock, PING_FLOOD, seconds=15)
    reply = hostile.read_server_frame(sock)
    sock.close()
    growth = hostile.peak_rss(daemon.process.pid) - before
    assert growth < 16 * MiB, (growth, taken)
    opcode, payload, _ = reply
    assert opcode == 1 and b'"unauthorized"' in payload
    # One error, then a close; the frames after the first were never parsed.
    assert metric(daemon, "openclaw_gateway_auth_failures_total") == 1
    yield still_serves(daemon)


@pytest_twisted.inlineCallbacks
def test_a_ping_flood_after_connect_from_a_client_that_never_reads(daemon) -> None:
    before = yield baseline(daemon)
    sock, head = hostile.ws_open(daemon.gateway)
    sock.sendall(hostile.request_frame("connect", "c", {"token": TOKEN}))
    opcode, payload, _ = hostile.read_server_frame(sock)
    assert b'"ok":true' in payload
    taken = hostile.flood(sock, PING_FLOOD, seconds=15)
    growth = hostile.peak_rss(daemon.process.pid) - before
    sock.close()
    assert growth < 16 * MiB, (growth, taken)
    assert taken < len(PING_FLOOD)  # the gateway stopped reading: backpressure reached the client
    assert metric(daemon, "openclaw_gateway_send_paused_total") >= 1
    yield still_serves(daemon)


@pytest_twisted.inlineCallbacks
def test_a_64_mib_webhook_body_is_refused_413_without_being_read(daemon) -> None:
    before = yield baseline(daemon)
    small = (b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\n"
             b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    response, _ = hostile.http_exchange(daemon.web, small)
    assert response.startswith(b"HTTP/1.1 403"), response[:200]  # the route is there and checks signatures
    head = (b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Hub-Signature-256: sha256=00\r\nContent-Length: %d\r\n\r\n" % (64 * MiB))
    response, sent = hostile.http_exchange(daemon.web, head, body_chunks=1024, chunk=b"x" * 65536)
    growth = hostile.peak_rss(daemon.process.pid) - before
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"body_too_large" in response
    assert metric(daemon, "openclaw_web_refused_total", reason="body_too_large") == 1
    assert sent < 64 * MiB
    assert growth < 4 * MiB, growth
    yield still_serves(daemon)


@pytest_twisted.inlineCallbacks
def test_a_chunked_webhook_body_is_cut_off_at_the_cap(daemon) -> None:
    before = yield baseline(daemon)
    head = b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    response, sent = hostile.http_exchange(daemon.web, head, body_chunks=1024, chunk=chunk)
    growth = hostile.peak_rss(daemon.process.pid) - before
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 64 * MiB and growth < 4 * MiB, (sent, growth)
    yield still_serves(daemon)


@pytest_twisted.inlineCallbacks
def test_300_slow_header_connections_are_closed_at_the_request_deadline(daemon) -> None:
    # One header byte every 0.5 s would keep an idle timeout from ever firing;
    # the 2 s deadline for a complete request closes them all.  Bounded at 12 s.
    closed_after = hostile.slow_headers(daemon.web, 300, every=0.5, seconds=12)
    assert all(t is not None for t in closed_after), sum(t is None for t in closed_after)
    assert metric(daemon, "openclaw_web_refused_total", reason="request_timeout") == 300
    with open(os.path.join(daemon.home, "logs", "combined.log")) as f:
        log = f.read()
    assert "Timing out" not in log and "openclaw:web:" not in log  # timeouts are debug lines, not info
    assert livez(daemon) == 200
    yield still_serves(daemon)
