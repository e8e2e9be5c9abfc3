"""Email out through a real SMTP server of the test's own (twisted.mail ESMTP with AUTH and STARTTLS)."""

from __future__ import annotations

import base64
import datetime
import email
import json
import sqlite3
from email import policy
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.checkers import (
    AllowAnonymousAccess,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.portal import IRealm, Portal
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.mail import smtp
from twisted.mail.imap4 import PLAINCredentials
from zope.interface import implementer

from openclaw.connectors.base import CONNECTED, FAILED
from openclaw.config.connectors import SmtpConfig
from openclaw.connectors.smtp import (
    SUBJECT_LIMIT,
    SmtpConnector,
    SmtpError,
    build_message,
    message_id,
    subject_of,
)
from tests.connector_harness import Harness
from tests.llm_servers import eliot_messages
from tests.whatsapp_server import until

USER, PASSWORD = "openclaw", "s3cret-PASSWORD-42"
SENDER, OWNER = "openclaw@example.com", "owner@example.com"


def self_signed() -> tuple[bytes, bytes]:
    """A certificate for ``localhost`` and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


CERT, KEY = self_signed()


@implementer(smtp.IMessage)
class Collected:
    def __init__(self, server: MailServer, envelope: dict) -> None:
        self.server = server
        self.envelope = envelope
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Any:
        parsed = email.message_from_bytes(b"\n".join(self.lines), policy=policy.default)
        self.server.received.append((self.envelope, parsed))
        return succeed(None)

    def connectionLost(self) -> None:
        self.lines = []


@implementer(smtp.IMessageDelivery)
class Delivery:
    def __init__(self, server: MailServer, user: Any) -> None:
        self.server = server
        self.user = user

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: from test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        protocol = self.server.protocols[-1]
        envelope = {"from": str(user.orig), "to": str(user.dest), "user": self.user, "tls": protocol.startedTLS}
        return lambda: Collected(self.server, envelope)


@implementer(IRealm)
class Realm:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        if smtp.IMessageDelivery in interfaces:
            return smtp.IMessageDelivery, Delivery(self.server, avatar_id), lambda: None
        raise NotImplementedError()


class EchoingESMTP(smtp.ESMTP):
    """
    Refuses a login with a 535 that quotes the whole AUTH exchange back, as
    some servers do: base64 of the password (LOGIN) or of ``\\0user\\0password`` (PLAIN).
    """

    def lineReceived(self, line: bytes) -> Any:
        self.heard = getattr(self, "heard", []) + [line]
        return super().lineReceived(line)

    def _ebAuthenticated(self, reason: Any) -> None:
        self.challenge = None
        self.sendCode(535, b"5.7.8 authentication failed: " + b" ".join(self.heard[-3:]))


class MailServer(smtp.SMTPFactory):
    """ESMTP on 127.0.0.1 with AUTH LOGIN/PLAIN (unauthenticated senders refused), STARTTLS when ``tls``."""

    protocol = smtp.ESMTP

    def __init__(self, tls: bool = True, anonymous: bool = False, mechanisms: tuple[bytes, ...] = (b"LOGIN", b"PLAIN"),
                 protocol: Any = smtp.ESMTP) -> None:
        self.protocol = protocol
        self.mechanisms = mechanisms
        checkers: list[Any] = [InMemoryUsernamePasswordDatabaseDontUse(**{USER: PASSWORD.encode()})]
        if anonymous:
            checkers.append(AllowAnonymousAccess())
        super().__init__(Portal(Realm(self), checkers))
        self.tls = PrivateCertificate.loadPEM(CERT + KEY).options() if tls else None
        self.received: list[tuple[dict, Any]] = []
        self.protocols: list[Any] = []
        self.listening: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        challengers = {b"LOGIN": smtp.LOGINCredentials, b"PLAIN": PLAINCredentials}
        protocol.challengers = {name: challengers[name] for name in self.mechanisms}
        protocol.ctx = self.tls
        self.protocols.append(protocol)
        return protocol

    def start(self, port: int = 0) -> MailServer:
        self.listening = reactor.listenTCP(port, self, interface="127.0.0.1")
        return self

    @property
    def port(self) -> int:
        return self.listening.getHost().port

    def stop(self) -> Any:
        return self.listening.stopListening()


def config(port: int, **overrides: Any) -> SmtpConfig:
    return SmtpConfig(**{"enabled": True, "host": "localhost", "port": port, "starttls": True, "user": USER,
                         "password": PASSWORD, "sender": SENDER, "to": (OWNER,), "timeout": 5.0, **overrides})


def start(tmp_path: Any, settings: SmtpConfig, trusted: bool = True) -> tuple[Harness, SmtpConnector]:
    harness = Harness(str(tmp_path))
    trust = Certificate.loadPEM(CERT) if trusted else None
    connector = harness.start(lambda h: SmtpConnector(reactor, settings, h.pipeline, h.store, h.notifier,
                                                      environ={}, trust_root=trust))
    return harness, connector


@inlineCallbacks
def send_fails(connector: SmtpConnector, to: str = OWNER) -> Any:
    """:return: the ``SmtpError`` text of a send that must fail."""
    try:
        yield connector.send_text(to, "hello", "k")
    except SmtpError as e:
        return str(e)
    raise AssertionError("the send should have failed")


@pytest_twisted.inlineCallbacks
def test_an_alert_for_an_smtp_target_is_mailed_over_starttls_with_auth(tmp_path) -> None:
    server = MailServer().start()
    harness, connector = start(tmp_path, config(server.port))
    try:
        assert connector.state == CONNECTED
        text = "Disk almost full on /var\n\nOnly 2% left; the largest directory is /var/log."
        session = yield harness.notifier.notify("alert", "disk", text, "disk:1", target=f"smtp:{OWNER}")
        assert session == f"smtp:{OWNER}"
        yield until(lambda: server.received)
        (envelope, message), = server.received
        assert envelope == {"from": SENDER, "to": OWNER, "user": USER.encode(), "tls": True}
        assert message["Subject"] == "Disk almost full on /var"
        assert message["From"] == SENDER and message["To"] == OWNER
        assert message["Message-ID"] == message_id("notify:disk:1", SENDER)
        assert message["Date"] is not None and message["Auto-Submitted"] == "auto-generated"
        assert message.get_content().strip() == text
        yield until(lambda: connector.sent)  # the server may see the mail before the client hears "250"
        health = connector.health()
        assert health["sent"] == 1 and health["last_sent"] is not None and health["last_error"] is None
    finally:
        yield harness.stop()
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_plain_smtp_with_auth_works_when_starttls_is_off(tmp_path) -> None:
    server = MailServer(tls=False).start()
    harness, connector = start(tmp_path, config(server.port, starttls=False))
    try:
        yield connector.send_text(OWNER, "Report\nall quiet", "report:1")
        (envelope, message), = server.received
        assert envelope["tls"] is False and envelope["user"] == USER.encode() and message["Subject"] == "Report"
    finally:
        yield harness.stop()
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_a_server_without_starttls_is_refused_when_starttls_is_required(tmp_path) -> None:
    server = MailServer(tls=False).start()
    harness, connector = start(tmp_path, config(server.port))
    try:
        error = yield send_fails(connector)
        assert "TLS" in error and server.received == []
        assert connector.health()["last_error"] == error and connector.health()["last_failed"] is not None
    finally:
        yield harness.stop()
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_an_untrusted_certificate_is_refused(tmp_path) -> None:
    server = MailServer().start()
    harness, connector = start(tmp_path, config(server.port), trusted=False)
    try:
        error = yield send_fails(connector)
        assert "certificate verify failed" in error
        assert server.received == [] and not any(p.authenticated for p in server.protocols)
    finally:
        yield harness.stop()
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_is_reported_in_health_without_the_password(tmp_path) -> None:
    server = MailServer().start()
    harness, connector = start(tmp_path, config(server.port, password="wrong-PASSWORD-99"))
    try:
        with eliot_messages() as messages:
            error = yield send_fails(connector)
        assert "535" in error and server.received == []
        health = connector.health()
        assert health["last_error"] == error and health["sent"] == 0
        assert "wrong-PASSWORD-99" not in json.dumps([messages, health], default=str)
    finally:
        yield harness.stop()
        yield server.stop()


@pytest.mark.parametrize("mechanism", [b"LOGIN", b"PLAIN"])
@pytest_twisted.inlineCallbacks
def test_a_535_echoing_the_auth_exchange_reaches_no_health_log_or_store_with_the_password(tmp_path, mechanism) -> None:
    wrong = "wrong-PASSWORD-99"
    server = MailServer(tls=False, mechanisms=(mechanism,), protocol=EchoingESMTP).start()
    harness, connector = start(tmp_path, config(server.port, password=wrong, starttls=False))
    try:
        with eliot_messages() as messages:
            yield harness.notifier.notify("alert", "disk", "Disk full", "disk:echo", target=f"smtp:{OWNER}")
            yield until(lambda: harness.outbox.counts.get("pending") == 1 and connector.last_failed is not None)
            yield until(lambda: stored_errors(tmp_path))
        echoed = b" ".join(server.protocols[-1].heard[-3:]).decode()
        forms = [base64.b64encode(v.encode()).decode().rstrip("=") for v in (wrong, f"\0{USER}\0{wrong}")]
        assert any(form in echoed for form in forms), echoed  # the server did quote the secret
        health = json.dumps(connector.health())
        assert "535" in health and "<redacted>" in health
        for where in (health, json.dumps(messages, default=str), json.dumps(stored_errors(tmp_path))):
            assert wrong not in where and not any(form in where for form in forms)
    finally:
        yield harness.stop()
        yield server.stop()


def stored_errors(tmp_path: Any) -> list[str]:
    """``outbox.last_error`` of every row, read from the database file as an operator would."""
    with sqlite3.connect(tmp_path / "openclaw.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT last_error FROM outbox WHERE last_error IS NOT NULL")]


@pytest_twisted.inlineCallbacks
def test_mail_queued_while_the_server_is_down_goes_out_when_it_is_back(tmp_path) -> None:
    server = MailServer().start()
    port = server.port
    yield server.stop()
    harness, connector = start(tmp_path, config(port))
    try:
        yield harness.notifier.notify("alert", "disk", "Disk full", "disk:2", target=f"smtp:{OWNER}")
        yield until(lambda: connector.last_failed is not None)
        assert "refused" in connector.health()["last_error"].lower()
        server.start(port)
        yield until(lambda: server.received, timeout=10)
        assert [m["Subject"] for _, m in server.received] == ["Disk full"]
        yield until(lambda: harness.outbox.counts.get("pending") == 0)
        assert connector.health()["sent"] == 1
    finally:
        yield harness.stop()
        yield server.stop()


class Silent(Protocol):
    """Accepts and never says a word (not even the SMTP greeting)."""


@pytest_twisted.inlineCallbacks
def test_a_server_that_never_answers_times_out(tmp_path) -> None:
    listening = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    harness, connector = start(tmp_path, config(listening.getHost().port, timeout=0.3))
    try:
        error = yield send_fails(connector)
        assert "no answer within 0.3s" in error
    finally:
        yield harness.stop()
        yield listening.stopListening()


@pytest_twisted.inlineCallbacks
def test_only_configured_addresses_are_mailed(tmp_path) -> None:
    server = MailServer().start()
    harness, connector = start(tmp_path, config(server.port))
    try:
        assert "not in connectors.smtp.to" in (yield send_fails(connector, "stranger@example.net"))
        assert "not an email address" in (yield send_fails(connector, "owner@example.com\r\nBcc: x@y.z"))
        assert server.protocols == []  # refused before connecting
    finally:
        yield harness.stop()
        yield server.stop()


@pytest_twisted.inlineCallbacks
def test_a_sender_that_is_not_an_address_fails_the_connector(tmp_path) -> None:
    harness, connector = start(tmp_path, config(25, sender="openclaw"))
    try:
        assert connector.state == FAILED and "sender" in connector.last_error
    finally:
        yield harness.stop()


@given(st.text(max_size=300))
def test_subjects_are_one_short_line(text: str) -> None:
    subject = subject_of(text)
    assert 0 < len(subject) <= SUBJECT_LIMIT and subject == subject.strip() and len(subject.splitlines()) == 1


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=2000).filter(str.strip))
def test_any_text_survives_the_trip_through_an_email(text: str) -> None:
    raw = build_message(SENDER, OWNER, text, "reply:e1:0", 1_700_000_000.0).as_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content().rstrip("\n") == text.rstrip("\n")
    assert parsed["Message-ID"] == message_id("reply:e1:0", SENDER) != message_id("reply:e1:1", SENDER)
