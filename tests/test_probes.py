"""Probes against real servers on 127.0.0.1, real files and this host; timing on a Clock."""

from __future__ import annotations

import datetime
import os
from typing import Any

import psutil
import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.names import hosts
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Site

from openclaw.config.proactive import CHECK_TYPES, CheckConfig
from openclaw.proactive.probes import ProbeResult, make_probe, timed


def check(type_: str, target: str = "", **kw: Any) -> CheckConfig:
    return CheckConfig(name="c", type=type_, target=target, **kw)


class Page(Resource):
    isLeaf = True

    def __init__(self, code: int = 200, body: bytes = b"all healthy", location: bytes = b"") -> None:
        super().__init__()
        self.code, self.body, self.location = code, body, location

    def render_GET(self, request: Any) -> bytes:
        request.setResponseCode(self.code)
        if self.location:
            request.setHeader(b"location", self.location)
        return self.body


@pytest.fixture
def listen():
    ports = []

    def start(port: Any) -> int:
        ports.append(port)
        return port.getHost().port

    yield start
    for port in ports:
        port.stopListening()


def http(listen: Any, page: Page) -> str:
    return f"http://127.0.0.1:{listen(reactor.listenTCP(0, Site(page), interface='127.0.0.1'))}/health"


# HTTP(S)


@pytest_twisted.inlineCallbacks
def test_http_2xx_and_3xx_pass_and_5xx_fails(listen) -> None:
    ok = yield make_probe(check("http", http(listen, Page())), reactor)()
    assert ok.ok and ok.detail == "HTTP 200" and ok.latency >= 0
    moved = yield make_probe(check("http", http(listen, Page(302, b"", b"http://127.0.0.1:1/"))), reactor)()
    assert moved.ok and moved.detail == "HTTP 302"  # not followed: port 1 would refuse
    down = yield make_probe(check("http", http(listen, Page(503))), reactor)()
    assert not down.ok and down.detail == "HTTP 503"


@pytest_twisted.inlineCallbacks
def test_http_expected_status_and_body_match(listen) -> None:
    url = http(listen, Page(404, b"gone"))
    assert (yield make_probe(check("http", url, expect_status=404), reactor)()).ok
    assert not (yield make_probe(check("http", url), reactor)()).ok
    url = http(listen, Page(200, b"status: all healthy"))
    assert (yield make_probe(check("http", url, body_match=r"all\s+healthy"), reactor)()).ok
    miss = yield make_probe(check("http", url, body_match="degraded"), reactor)()
    assert not miss.ok and "does not match" in miss.detail


@pytest_twisted.inlineCallbacks
def test_http_to_a_closed_port_is_refused(listen) -> None:
    port = reactor.listenTCP(0, Site(Page()), interface="127.0.0.1")
    number = port.getHost().port
    yield port.stopListening()
    result = yield make_probe(check("http", f"http://127.0.0.1:{number}/"), reactor)()
    assert not result.ok and result.detail == "connection refused"


def certificate(days: int) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest_twisted.inlineCallbacks
def test_https_certificate_days_left(listen) -> None:
    key_pem, cert_pem = certificate(days=5)
    options = ssl.PrivateCertificate.loadPEM(key_pem + cert_pem).options()
    port = listen(reactor.listenSSL(0, Site(Page()), options, interface="127.0.0.1"))
    trust = BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(cert_pem))
    url = f"https://localhost:{port}/"
    soon = yield make_probe(check("http", url, cert_days_min=14), reactor, tls_policy=trust)()
    assert not soon.ok and soon.detail == "HTTP 200, TLS certificate expires in 4 days"
    fine = yield make_probe(check("http", url, cert_days_min=3), reactor, tls_policy=trust)()
    assert fine.ok and fine.detail == "HTTP 200"
    untrusted = yield make_probe(check("http", url), reactor)()
    assert not untrusted.ok and untrusted.detail.startswith("TLS failed")


# Timing, on a Clock


def test_a_probe_that_never_answers_times_out() -> None:
    clock, pending = Clock(), Deferred()
    results: list[ProbeResult] = []
    timed(check("tcp", "h:1", timeout=2.0), clock, lambda: pending)().addCallback(results.append)
    clock.advance(1.9)
    assert results == []
    clock.advance(0.2)
    assert results == [ProbeResult(False, pytest.approx(2.1), "timed out after 2s")]


def test_a_slow_success_fails_latency_max() -> None:
    clock = Clock()

    def slow() -> Deferred:
        d = Deferred()
        clock.callLater(1.5, d.callback, (True, "connected"))
        return d

    results: list[ProbeResult] = []
    timed(check("tcp", "h:1", latency_max=1.0), clock, slow)().addCallback(results.append)
    timed(check("tcp", "h:1", latency_max=2.0), clock, slow)().addCallback(results.append)
    clock.advance(1.5)
    assert results == [ProbeResult(False, 1.5, "slow: 1.50s, more than 1s (connected)"),
                       ProbeResult(True, 1.5, "connected")]


def test_an_exception_becomes_a_failed_result() -> None:
    def broken() -> Any:
        raise ValueError("bad")

    results: list[ProbeResult] = []
    timed(check("tcp", "h:1"), Clock(), broken)().addCallback(results.append)
    assert results == [ProbeResult(False, 0.0, "ValueError: bad")]


# TCP and DNS


@pytest_twisted.inlineCallbacks
def test_tcp_connects_then_is_refused_once_the_listener_stops() -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    probe = make_probe(check("tcp", f"127.0.0.1:{port.getHost().port}"), reactor)
    up = yield probe()
    assert up.ok and up.detail == "connected"
    yield port.stopListening()
    down = yield probe()
    assert not down.ok and down.detail == "connection refused"


@pytest_twisted.inlineCallbacks
def test_dns_resolves_localhost_from_the_hosts_file() -> None:
    result = yield make_probe(check("dns", "localhost"), reactor)()
    assert result.ok and result.detail == "resolves to 127.0.0.1"


@pytest_twisted.inlineCallbacks
def test_dns_failure_for_an_unknown_name(tmp_path) -> None:
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text("127.0.0.1 localhost\n")
    resolver = hosts.Resolver(str(hosts_file).encode())
    known = yield make_probe(check("dns", "localhost"), reactor, resolver=resolver)()
    assert known.ok
    unknown = yield make_probe(check("dns", "nothere.invalid"), reactor, resolver=resolver)()
    assert not unknown.ok and unknown.detail == "name not found"


# This host


@pytest_twisted.inlineCallbacks
def test_disk_free_percent_on_a_real_mount(tmp_path) -> None:
    fine = yield make_probe(check("disk", str(tmp_path), min_free_percent=0), reactor)()
    assert fine.ok and "% free" in fine.detail
    full = yield make_probe(check("disk", str(tmp_path), min_free_percent=100), reactor)()
    assert not full.ok and full.detail.endswith("(min 100%)")
    missing = yield make_probe(check("disk", str(tmp_path / "none")), reactor)()
    assert not missing.ok and missing.detail == "No such file or directory"


@pytest_twisted.inlineCallbacks
def test_a_running_process_is_found_by_name() -> None:
    me = psutil.Process().name()
    found = yield make_probe(check("process", me), reactor)()
    assert found.ok and found.detail.endswith("running")
    gone = yield make_probe(check("process", "no-such-process-xyz"), reactor)()
    assert not gone.ok and gone.detail == "not running"


@pytest.mark.parametrize(("kind", "patch", "value", "detail"), [
    ("memory", "virtual_memory", type("M", (), {"percent": 75.0})(), "memory used 75.0% (max {}%)"),
    ("load", "getloadavg", (3.0, 2.0, 1.0), "load 3.00 on 4 CPUs, 75.0% (max {}%)"),
    ("cpu", "cpu_percent", 75.0, "cpu 75.0% (max {}%)"),
])
def test_resource_thresholds(monkeypatch, kind: str, patch: str, value: Any, detail: str) -> None:
    monkeypatch.setattr(psutil, patch, lambda *a, **kw: value)
    monkeypatch.setattr(psutil, "cpu_count", lambda *a, **kw: 4)
    for limit, ok in ((80.0, True), (70.0, False), (75.0, True)):
        results: list[ProbeResult] = []
        make_probe(check(kind, max_percent=limit), Clock())().addCallback(results.append)
        assert results == [ProbeResult(ok, 0.0, detail.format(f"{limit:g}"))]


# Log files


@pytest_twisted.inlineCallbacks
def test_logfile_reports_new_matching_lines_only(tmp_path) -> None:
    log = tmp_path / "app.log"
    log.write_text("ERROR old news\ninfo\n")
    probe = make_probe(check("logfile", str(log), pattern="ERROR"), reactor)
    first = yield probe()
    assert first.ok  # the first look only notes where the file ends
    with log.open("a") as f:
        f.write("info\nERROR disk on fire\nERROR again\nERROR half a li")
    found = yield probe()
    assert not found.ok and found.detail == "2 new lines matching: ERROR disk on fire"
    with log.open("a") as f:
        f.write("ne\n")
    rest = yield probe()
    assert not rest.ok and rest.detail == "1 new line matching: ERROR half a line"
    quiet = yield probe()
    assert quiet.ok and quiet.detail == "no new matching lines"


@pytest_twisted.inlineCallbacks
def test_logfile_rotation_and_truncation_start_from_the_top(tmp_path) -> None:
    log = tmp_path / "app.log"
    log.write_text("x" * 100 + "\n")
    probe = make_probe(check("logfile", str(log), pattern="ERROR"), reactor)
    assert (yield probe()).ok
    os.rename(log, tmp_path / "app.log.1")  # rotated: a new file, a new inode
    log.write_text("ERROR after rotation\n" + "y" * 200 + "\n")
    rotated = yield probe()
    assert not rotated.ok and rotated.detail == "1 new line matching: ERROR after rotation"
    log.write_text("ERROR after truncation\n")  # same inode, shorter than the offset
    truncated = yield probe()
    assert not truncated.ok and truncated.detail == "1 new line matching: ERROR after truncation"
    os.remove(log)
    missing = yield probe()
    assert not missing.ok and missing.detail == "No such file or directory"
    log.write_text("ERROR in a new file\n")
    recreated = yield probe()
    assert not recreated.ok and recreated.detail == "1 new line matching: ERROR in a new file"


def test_every_check_type_has_a_probe() -> None:
    targets = {"tcp": "127.0.0.1:1", "http": "http://127.0.0.1:1/"}
    for kind in CHECK_TYPES:
        assert callable(make_probe(check(kind, targets.get(kind, "x"), pattern="x"), Clock()))


@pytest_twisted.inlineCallbacks
def test_probes_do_not_log_their_factories(tmp_path) -> None:
    """Twisted's per-connection "Starting factory" lines drowned the console: a probe's are off."""
    from twisted.logger import globalLogPublisher
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from openclaw.proactive.probes import make_probe

    seen: list[str] = []
    observer = lambda event: seen.append(event.get("log_format") or "")  # noqa: E731
    site = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    port = site.getHost().port
    globalLogPublisher.addObserver(observer)
    try:
        tcp = yield make_probe(check("tcp", f"127.0.0.1:{port}"), reactor)()
        web = yield make_probe(check("http", f"http://127.0.0.1:{port}/", expect_status=404), reactor)()
    finally:
        globalLogPublisher.removeObserver(observer)
        yield site.stopListening()
    assert tcp.ok and web.ok, (tcp, web)
    assert not [f for f in seen if "factory" in f.lower()], seen
