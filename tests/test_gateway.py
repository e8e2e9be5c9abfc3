"""The gateway over real WebSocket connections on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import stat

import orjson
import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from openclaw import metrics
from openclaw.config import build_config
from openclaw.gateway import frames
from openclaw.gateway.methods import core_methods
from openclaw.gateway.service import AUTH_TIMEOUT, GatewayService
from openclaw.runtime import Runtime
from openclaw.status import TreeStatus
from tests import hostile, wsclient

TOKEN = "test-token-0123456789abcdef"


class Gateway:
    """A started GatewayService; ``methods`` may add test methods."""

    def __init__(self, tmp_path, clock=None, token=TOKEN, methods=None, **gateway) -> None:
        gateway.setdefault("listen", "tcp:0:interface=127.0.0.1")
        gateway.setdefault("token", token)
        self.config = build_config({"gateway": gateway}).gateway
        self.runtime = Runtime(clock or reactor)
        reporting: list = []  # the gateway, once built, reports itself to /health
        table = core_methods(self.runtime, TreeStatus(reporting))
        table.update(methods or {})
        self.service = GatewayService(reactor, self.runtime, self.config, str(tmp_path / "gateway.token"), table)
        reporting.append(self.service)
        self.service.startService()
        self.port = self.service.port.getHost().port

    def connect(self, token=TOKEN):
        return wsclient.connect(self.port, token)

    def stop(self):
        return self.service.stopService()


@pytest.fixture
def gateway(tmp_path):
    gw = Gateway(tmp_path)
    yield gw
    pytest_twisted.blockon(gw.stop())


def counter(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest_twisted.inlineCallbacks
def test_connect_then_ping_health_status(gateway) -> None:
    before = counter("openclaw_requests_total", source="gateway", type="ping")
    client = yield gateway.connect()
    pong = yield client.request("ping")
    assert pong["ok"] and pong["payload"]["pong"] is True and pong["type"] == "res"
    health = yield client.request("health")
    assert {"status", "uptime", "timestamp", "connections", "memory", "services"} <= set(health["payload"])
    status = yield client.request("status")
    assert "webchat:test" in status["payload"]["sessions"]
    assert counter("openclaw_requests_total", source="gateway", type="ping") == before + 1
    assert gateway.service.status() == {"connections": 1, "inflight": 0}
    yield client.close()


@pytest_twisted.inlineCallbacks
def test_replies_are_not_held_by_nagle(gateway) -> None:
    """An ack and its reply are two small writes: with Nagle the second waits out the client's delayed ACK."""
    client = yield gateway.connect()
    try:
        (conn,) = gateway.service.connections
        assert conn.transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        yield client.close()


@pytest.mark.parametrize("params", [{"token": "wrong-token"}, {}, {"token": 123}, None])
@pytest_twisted.inlineCallbacks
def test_wrong_or_missing_token_is_refused_and_closed_with_1008(gateway, params) -> None:
    failures = counter("openclaw_gateway_auth_failures_total")
    client = yield wsclient.connect(gateway.port)
    client.send("connect", params, request_id="c1")
    reply = yield client.next()
    assert reply == {"type": "res", "id": "c1", "ok": False,
                     "error": {"code": "unauthorized", "message": "wrong or missing token"}}
    code = yield client.closed
    assert code == 1008
    assert counter("openclaw_gateway_auth_failures_total") == failures + 1


@pytest_twisted.inlineCallbacks
def test_requests_before_connect_are_refused(gateway) -> None:
    client = yield wsclient.connect(gateway.port)
    client.send("status", request_id="s1")
    reply = yield client.next()
    assert (reply["id"], reply["error"]["code"]) == ("s1", "unauthorized")
    assert (yield client.closed) == 1008


@pytest_twisted.inlineCallbacks
def test_silent_clients_are_closed_after_the_auth_timeout(tmp_path) -> None:
    clock = Clock()
    gw = Gateway(tmp_path, clock=clock)
    client = yield wsclient.connect(gw.port)
    clock.advance(AUTH_TIMEOUT - 1)
    assert not client.closed.called
    clock.advance(1)
    assert (yield client.closed) == 1008
    yield gw.stop()


BAD_FRAMES = [
    (b"{nope", False, frames.INVALID_JSON, None),
    (b'{"type":"req","id":"\xff","method":"ping"}', False, frames.INVALID_JSON, None),
    (b"[]", False, frames.INVALID_FRAME, None),
    (b'{"type":"req","id":"m1"}', False, frames.MISSING_FIELD, "m1"),
    (b'{"type":"req","id":"m2","method":"ping","params":3}', False, frames.INVALID_FIELD, "m2"),
    (b'{"type":"event","id":"m3","method":"ping"}', False, frames.INVALID_FIELD, "m3"),
    (b'{"type":"req","id":"m4","method":"ping"}', True, frames.BINARY_NOT_SUPPORTED, None),
]


@pytest.mark.parametrize("payload, binary, code, request_id", BAD_FRAMES)
@pytest_twisted.inlineCallbacks
def test_each_malformed_frame_gets_an_error_reply_and_the_connection_lives(
    gateway, payload, binary, code, request_id
) -> None:
    errors = counter("openclaw_gateway_frame_errors_total", code=code)
    client = yield gateway.connect()
    client.send_raw(payload, binary=binary)
    reply = yield client.next()
    assert reply["ok"] is False and reply["id"] == request_id and reply["error"]["code"] == code
    pong = yield client.request("ping")
    assert pong["ok"]
    assert counter("openclaw_gateway_frame_errors_total", code=code) == errors + 1
    yield client.close()


@pytest_twisted.inlineCallbacks
def test_replies_of_every_frame_length_form_reach_a_real_client(tmp_path) -> None:
    # 7-bit, 16-bit and 64-bit lengths of the frames the gateway builds itself.
    gw = Gateway(tmp_path, methods={"echo": lambda conn, params: params})
    client = yield gw.connect()
    for size in (0, 100, 125, 126, 65_000, 65_536, 200_000):
        reply = yield client.request("echo", {"text": "x" * size})
        assert reply["ok"] and reply["payload"] == {"text": "x" * size}
    yield client.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_unknown_method_and_duplicate_id(tmp_path) -> None:
    hold = defer.Deferred()
    gw = Gateway(tmp_path, methods={"hold": lambda conn, params: hold})
    client = yield gw.connect()
    unknown = yield client.request("fly", {})
    assert unknown["error"]["code"] == "unknown_method"
    client.send("hold", request_id="same")
    client.send("hold", request_id="same")
    duplicate = yield client.next()
    assert (duplicate["id"], duplicate["error"]["code"]) == ("same", "duplicate_id")
    assert gw.service.status()["inflight"] == 1
    hold.callback({"held": True})
    done = yield client.next()
    assert done == {"type": "res", "id": "same", "ok": True, "payload": {"held": True}}
    yield client.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_a_failing_method_answers_internal_error_without_a_traceback(tmp_path) -> None:
    def broken(conn, params):
        raise RuntimeError("secret detail")

    gw = Gateway(tmp_path, methods={"broken": broken})
    client = yield gw.connect()
    reply = yield client.request("broken")
    assert reply["error"]["code"] == "internal_error" and "secret" not in reply["error"]["message"]
    assert gw.service.status()["inflight"] == 0
    assert (yield client.request("ping"))["ok"]
    yield client.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_oversize_frames_get_frame_too_large_then_repeated_ones_close_1009(tmp_path) -> None:
    gw = Gateway(tmp_path, max_frame_bytes=1000, max_bad_frames=2)
    client = yield gw.connect()
    big = orjson.dumps({"type": "req", "id": "big", "method": "ping", "params": {"x": "y" * 2000}})
    client.send_raw(big)
    reply = yield client.next()
    assert reply["error"]["code"] == "frame_too_large"
    assert (yield client.request("ping"))["ok"]
    client.send_raw(big)
    reply = yield client.next()
    assert reply["error"]["code"] == "frame_too_large"
    assert (yield client.closed) == 1009
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_frames_past_the_hard_limit_are_cut_off_with_1009(tmp_path) -> None:
    gw = Gateway(tmp_path, max_frame_bytes=1000)
    client = yield gw.connect()
    client.send_raw(b" " * 200_000)
    assert (yield client.closed) == 1009
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_repeated_garbage_closes_with_1008(tmp_path) -> None:
    gw = Gateway(tmp_path, max_bad_frames=3)
    client = yield gw.connect()
    for _ in range(3):
        client.send_raw(b"garbage")
    codes = []
    for _ in range(3):
        reply = yield client.next()
        codes.append(reply["error"]["code"])
    assert codes == ["invalid_json"] * 3
    assert (yield client.closed) == 1008
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_generated_token_is_saved_0600_and_reused(tmp_path) -> None:
    gw = Gateway(tmp_path, token="")
    path = tmp_path / "gateway.token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32 and gw.service.token == token
    client = yield gw.connect(token=token)
    yield client.close()
    yield gw.stop()
    os.chmod(path, 0o644)
    again = Gateway(tmp_path, token="")
    assert again.service.token == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    yield again.stop()


# Limits (docs/gateway.md, "Limits")


@pytest_twisted.inlineCallbacks
def test_plain_http_gets_426_without_naming_the_library(gateway) -> None:
    refused = counter("openclaw_gateway_refused_total", reason="handshake")
    response = yield treq.get(f"http://127.0.0.1:{gateway.port}/", persistent=False)
    body = yield response.content()
    assert response.code == 426 and response.phrase == b"Upgrade Required" and body == b""
    assert not response.headers.hasHeader(b"server")
    assert counter("openclaw_gateway_refused_total", reason="handshake") == refused + 1


@pytest_twisted.inlineCallbacks
def test_browser_origins_are_refused_unless_allowed(tmp_path) -> None:
    gw = Gateway(tmp_path, allowed_origins=["https://console.example:8443"])
    refused = counter("openclaw_gateway_refused_total", reason="origin")
    with pytest.raises(ConnectionError, match="403"):
        yield wsclient.connect(gw.port, origin="https://evil.example")
    assert counter("openclaw_gateway_refused_total", reason="origin") == refused + 1
    client = yield wsclient.connect(gw.port, TOKEN, origin="https://console.example:8443")
    assert (yield client.request("ping"))["ok"]
    yield client.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_connections_over_the_per_address_and_total_caps_get_503(tmp_path) -> None:
    gw = Gateway(tmp_path, max_connections=3, max_connections_per_address=2)
    per_address = counter("openclaw_gateway_refused_total", reason="too_many_per_address")
    first, second = (yield gw.connect()), (yield gw.connect())
    with pytest.raises(ConnectionError, match="503"):
        yield gw.connect()
    assert counter("openclaw_gateway_refused_total", reason="too_many_per_address") == per_address + 1
    yield first.close()
    third = yield gw.connect()  # a closed connection frees its place
    assert (yield third.request("ping"))["ok"]
    yield second.close()
    yield third.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_requests_over_the_rate_get_rate_limited_until_tokens_return(tmp_path) -> None:
    clock = Clock()
    gw = Gateway(tmp_path, clock=clock, max_requests_per_second=2, request_burst=3)
    limited = counter("openclaw_gateway_refused_total", reason="rate_limited")
    client = yield gw.connect()  # connect spends the first token
    assert (yield client.request("ping"))["ok"]
    assert (yield client.request("ping"))["ok"]
    refused = yield client.request("ping")
    assert refused["id"] == "r4" and refused["error"]["code"] == "rate_limited"
    assert counter("openclaw_gateway_refused_total", reason="rate_limited") == limited + 1
    clock.advance(0.5)
    assert (yield client.request("ping"))["ok"]
    yield client.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_a_malformed_frame_before_connect_is_one_error_then_a_close(gateway) -> None:
    client = yield wsclient.connect(gateway.port)
    client.send_raw(b"{nope")
    reply = yield client.next()
    assert reply["error"]["code"] == "invalid_json"
    assert (yield client.closed) == 1008


@pytest_twisted.inlineCallbacks
def test_a_client_that_does_not_read_is_closed_past_the_send_hard_limit(tmp_path) -> None:
    stalled: list[hostile.RawClient] = []
    big = frames.encode_event("filler", {"x": "y" * 65536})

    def spew(conn, params):
        while conn.state == conn.STATE_OPEN:  # ends at the hard limit
            conn.send(big)
        reactor.callLater(0, stalled[0].transport.resumeProducing)  # now read what was queued
        return {}

    gw = Gateway(tmp_path, methods={"spew": spew}, send_high_water=65536, send_hard_limit=1024 * 1024)
    full = counter("openclaw_gateway_refused_total", reason="send_queue_full")
    paused = counter("openclaw_gateway_send_paused_total")
    out = hostile.request_frame("connect", "c", {"token": TOKEN}) + hostile.request_frame("spew", "s")
    stalled.append((yield hostile.raw_connect(gw.port, hostile.HANDSHAKE.format(extra="").encode() + out, stall=True)))
    data = yield stalled[0].lost
    received = hostile.server_frames(data[data.index(b"\r\n\r\n") + 4:])
    fillers = [p for op, p in received if op == 1 and b"filler" in p]
    assert 1 <= len(fillers) <= 1024 * 1024 // len(big) + 1  # bounded by the hard limit
    opcode, payload = received[-1]
    assert opcode == 8 and int.from_bytes(payload[:2], "big") == 1008 and b"send queue full" in payload
    assert counter("openclaw_gateway_refused_total", reason="send_queue_full") == full + 1
    assert counter("openclaw_gateway_send_paused_total") >= paused + 1
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_a_reload_applies_new_limits_to_the_next_connection(tmp_path) -> None:
    gw = Gateway(tmp_path)
    first = yield gw.connect()
    gw.service.reconfigure(build_config({"gateway": {"token": TOKEN, "max_connections_per_address": 1}}))
    with pytest.raises(ConnectionError, match="503"):
        yield gw.connect()
    assert (yield first.request("ping"))["ok"]  # the open connection stays
    yield first.close()
    yield gw.stop()


@pytest_twisted.inlineCallbacks
def test_an_endless_opening_handshake_is_refused_at_16_kib(gateway) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000
    client = yield hostile.raw_connect(gateway.port, head)
    answer = yield client.lost
    assert answer.startswith(b"HTTP/1.1 431 ")
