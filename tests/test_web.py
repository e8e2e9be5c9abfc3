"""/health, /livez, /readyz and /metrics over real HTTP on 127.0.0.1."""

from __future__ import annotations

import orjson
import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.task import Clock
from zope.interface import implementer

from openclaw.config import build_config
from openclaw.interfaces import IConnector
from openclaw.metrics import REGISTRY
from openclaw.runtime import Runtime
from openclaw.web import HealthApp, QuietSite, WebService, body_limit
from tests import hostile, wsclient
from tests.daemon import RunningDaemon


@implementer(IConnector)
class FakeConnector(Service):
    def __init__(self, name: str, connected: bool) -> None:
        self.setName(name)
        self.connected = connected

    def is_connected(self) -> bool:
        return self.connected

    def health(self) -> dict:
        return {"connected": self.connected, "last_error": None if self.connected else "401", "last_receive": None}


@pytest_twisted.inlineCallbacks
def test_health_is_200_with_every_field_when_running(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    code, headers, body = yield daemon.get("/health")
    health = orjson.loads(body)
    assert code == 200 and headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert health["status"] == "ok"
    assert health["connections"] == {}
    assert health["memory"]["rss_bytes"] > 1_000_000 and health["memory"]["peak_rss_bytes"] >= 1_000_000
    assert health["uptime"] >= 0 and health["timestamp"].endswith("Z")
    assert health["services"]["gateway"] == "running" and health["last_heartbeat"] is None
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_health_is_503_when_a_connector_is_down_but_livez_stays_200(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    connectors = daemon.service.getServiceNamed("connectors")
    FakeConnector("telegram", True).setServiceParent(connectors)
    FakeConnector("discord", False).setServiceParent(connectors)
    code, _, body = yield daemon.get("/health")
    health = orjson.loads(body)
    assert code == 503 and health["status"] == "degraded"
    assert health["connections"] == {"telegram": True, "discord": False}
    assert health["connectors"]["discord"]["last_error"] == "401"
    code, _, _ = yield daemon.get("/livez")
    assert code == 200
    code, _, _ = yield daemon.get("/readyz")
    assert code == 200
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_readyz_is_503_until_startup_completes() -> None:
    runtime = Runtime(reactor)
    web = WebService(reactor, runtime, "tcp:0:interface=127.0.0.1")
    web.startService()
    url = f"http://127.0.0.1:{web.port.getHost().port}"
    response = yield treq.get(url + "/readyz", persistent=False)
    assert response.code == 503 and orjson.loads((yield response.content()))["status"] == "starting"
    response = yield treq.get(url + "/health", persistent=False)
    assert response.code == 503
    yield response.content()
    runtime.mark_ready()
    response = yield treq.get(url + "/readyz", persistent=False)
    assert response.code == 200
    yield response.content()
    yield web.stopService()


@pytest_twisted.inlineCallbacks
def test_unknown_paths_are_json_404_and_wrong_methods_405(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    code, headers, body = yield daemon.get("/admin")
    assert code == 404 and orjson.loads(body) == {"error": {"code": "not_found", "path": "/admin"}}
    response = yield treq.post(daemon.url("/health"), persistent=False)
    assert response.code == 405
    assert orjson.loads((yield response.content()))["error"]["code"] == "method_not_allowed"
    # A GET-only route takes no body at all: refused before routing.
    response = yield treq.post(daemon.url("/health"), data=b"x", persistent=False)
    assert response.code == 413
    assert orjson.loads((yield response.content()))["error"]["code"] == "body_too_large"
    yield daemon.stop()


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest_twisted.inlineCallbacks
def test_metrics_parse_back_and_count_gateway_requests(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    code, headers, body = yield daemon.get("/metrics")
    assert code == 200 and headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=")
    before = samples(body.decode())
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    for _ in range(3):
        yield client.request("ping")
    code, _, body = yield daemon.get("/metrics")
    after = samples(body.decode())
    key = ("openclaw_requests_total", (("source", "gateway"), ("type", "ping")))
    assert after[key] == before.get(key, 0) + 3
    assert after[("openclaw_gateway_connections", ())] == 1
    assert after[("openclaw_gateway_inflight_requests", ())] == 0
    assert ("openclaw_active_sessions", ()) in after
    assert after[("openclaw_ready", ())] == 1
    buckets = {dict(labels).get("le") for (name, labels) in after if name == "openclaw_response_duration_seconds_bucket"
               and dict(labels).get("source") == "gateway"}
    assert buckets == {"0.1", "0.5", "1.0", "2.0", "5.0", "10.0", "+Inf"}
    count = ("openclaw_response_duration_seconds_count", (("source", "gateway"),))
    assert after[count] >= before.get(count, 0) + 4
    assert after[("process_resident_memory_bytes", ())] > 0
    yield client.close()
    yield daemon.stop()


# Limits (docs/configuration.md, "web")


class LimitedWeb:
    """The routes on a limited site whose deadlines run on ``clock``."""

    def __init__(self, clock=None, **limits) -> None:
        self.limits = build_config({"web": limits}).web
        site = QuietSite(HealthApp(Runtime(reactor)).app.resource(), self.limits, body_limit,
                         reactor=clock or reactor)
        self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    def send(self, data: bytes):
        """Connect, send ``data`` and fire with everything the server answered once it closed."""
        return hostile.raw_connect(self.port, data).addCallback(lambda client: client.lost)

    def stop(self):
        return self.listening.stopListening()


@pytest.fixture
def web():
    site = LimitedWeb()
    yield site
    pytest_twisted.blockon(site.stop())


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("openclaw_web_refused_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("encodings", [
    [b"chunked", b"identity"],  # Twisted alone ignores identity and processes the body
    [b"identity"],
    [b"gzip, chunked"],
    [b"chunked, chunked"],
])
@pytest_twisted.inlineCallbacks
def test_any_transfer_encoding_but_one_chunked_is_400(web, encodings) -> None:
    before = refused("bad_transfer_encoding")
    headers = b"".join(b"Transfer-Encoding: %s\r\n" % e for e in encodings)
    answer = yield web.send(b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b'"bad_transfer_encoding"' in answer
    assert refused("bad_transfer_encoding") == before + 1


@pytest_twisted.inlineCallbacks
def test_a_body_on_a_get_only_route_and_a_body_over_the_webhook_cap_are_413_at_once(web) -> None:
    before = refused("body_too_large")
    answer = yield web.send(b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"body_too_large"' in answer
    too_big = web.limits.max_webhook_body + 1
    answer = yield web.send(b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % too_big)
    assert answer.startswith(b"HTTP/1.1 413 ")  # answered on the headers alone: no body was sent
    assert refused("body_too_large") == before + 2


@pytest_twisted.inlineCallbacks
def test_a_chunked_body_is_cut_off_at_the_cap() -> None:
    web = LimitedWeb(max_webhook_body="1KiB")
    chunk = b"200\r\n" + b"x" * 512 + b"\r\n"
    answer = yield web.send(b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3)
    assert answer.startswith(b"HTTP/1.1 413 ")
    answer = yield web.send(b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                            b"Connection: close\r\n\r\n" + chunk * 2 + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")  # within the cap: routed (no webhook named x)
    yield web.stop()


@pytest_twisted.inlineCallbacks
def test_an_incomplete_request_is_closed_with_408_at_the_deadline() -> None:
    clock = Clock()
    web = LimitedWeb(clock, request_timeout="5s")
    before = refused("request_timeout")
    client = yield hostile.raw_connect(web.port, b"GET /livez HTTP/1.1\r\nHost: x\r\n")
    clock.advance(4.9)
    assert not client.lost.called
    client.transport.write(b"X-More: y\r\n")  # bytes keep coming: an idle timeout would never fire
    clock.advance(0.1)
    answer = yield client.lost
    assert answer.startswith(b"HTTP/1.1 408 ") and refused("request_timeout") == before + 1
    yield web.stop()


@pytest_twisted.inlineCallbacks
def test_connections_over_the_cap_get_503() -> None:
    web = LimitedWeb(max_connections=1)
    before = refused("too_many_connections")
    holder = yield hostile.raw_connect(web.port, b"")
    answer = yield web.send(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 503 ") and b'"too_many_connections"' in answer
    assert refused("too_many_connections") == before + 1
    holder.transport.loseConnection()
    yield holder.lost
    answer = yield web.send(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    yield web.stop()


@pytest_twisted.inlineCallbacks
def test_a_reload_applies_new_web_limits() -> None:
    web = WebService(reactor, Runtime(reactor), "tcp:0:interface=127.0.0.1")
    web.startService()
    web.reconfigure(build_config({"web": {"max_webhook_body": "2KiB"}}))
    port = web.port.getHost().port
    head = b"POST /webhooks/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    answer = yield hostile.raw_connect(port, head % 2049).addCallback(lambda client: client.lost)
    assert answer.startswith(b"HTTP/1.1 413 ")
    answer = yield hostile.raw_connect(port, head % 2048 + b"x" * 2048).addCallback(lambda client: client.lost)
    assert answer.startswith(b"HTTP/1.1 404 ")  # within the new cap: routed
    yield web.stopService()
