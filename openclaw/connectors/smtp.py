"""
Email out: alerts and reports delivered by SMTP, one email per outbox item.

There is nothing to receive, so ``run_once`` checks the configuration and
then waits (the stall watchdog does not apply); each ``send_text`` opens
its own SMTP connection (STARTTLS when ``starttls``, which then is
required, with a verified certificate; AUTH when ``user`` is set).  A
failed send raises, and the outbox retries it with backoff.  Sessions are
``smtp:<address>``; with ``to`` set, only those addresses are mailed.

The ``Message-ID`` is derived from the outbox item's dedupe key, so an email
sent again after a lost reply is recognisable as the same message.
"""

from __future__ import annotations

import hashlib
import os
import re
from email.message import EmailMessage
from email.utils import formatdate
from io import BytesIO
from typing import Any, Mapping

from twisted.internet.defer import Deferred, fail
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.ssl import optionsForClientTLS
from twisted.mail.smtp import ESMTPSenderFactory, SMTPClientError

from openclaw.config.sections import sasl_forms
from openclaw.connectors.base import ConnectorService, Terminal
from openclaw.config.connectors import SmtpConfig, credential
from openclaw.eliotutil import log, message_type, typed
from openclaw.health import iso


SMTP_SENT = message_type("openclaw:smtp:sent", [
    typed("to", [str], "the recipient"), typed("dedupe_key", [str], "the row's idempotency key"),
], "one email sent")
SMTP_SEND_FAILED = message_type("openclaw:smtp:send-failed", [typed("error", [str, None], "why, without the transcript")],
                                "an email could not be sent (the outbox retries)", "warn")

SUBJECT_LIMIT = 78
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


class SmtpError(Exception):
    """
    A send failed; the text is safe to show: no protocol transcript, and the
    server's reply scrubbed of the credentials (a 535 may echo the AUTH
    exchange, base64(password) or base64(\\0user\\0password)).
    """


def subject_of(text: str) -> str:
    """The first non-blank line, cut to fit one header line."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "") or "openclaw"
    return first if len(first) <= SUBJECT_LIMIT else first[:SUBJECT_LIMIT - 1].rstrip() + "…"


def message_id(dedupe_key: str, sender: str) -> str:
    """A ``Message-ID`` that is the same for every attempt of one outbox item."""
    domain = sender.rpartition("@")[2] or "openclaw.invalid"
    return f"<{hashlib.sha256(dedupe_key.encode('utf-8')).hexdigest()[:32]}.openclaw@{domain}>"


def build_message(sender: str, to: str, text: str, dedupe_key: str, now: float) -> EmailMessage:
    """One plain-text email; ``Auto-Submitted`` keeps auto-responders from answering it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject_of(text)
    message["Date"] = formatdate(now, usegmt=True)
    message["Message-ID"] = message_id(dedupe_key, sender)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def is_address(value: str) -> bool:
    """A bare ASCII ``local@domain.tld`` (what an ``smtp:`` session may name)."""
    return value.isascii() and _ADDRESS.fullmatch(value) is not None


def describe(failure: Any, host: str, port: int, timeout: float) -> str:
    """A one-line account of a failed send, without the SMTP transcript."""
    error = failure.value
    if isinstance(error, SMTPClientError):
        resp = error.resp.decode("utf-8", "replace") if isinstance(error.resp, bytes) else str(error.resp)
        return f"SMTP {error.code} from {host}:{port}: {resp}" if error.code > 0 else f"{host}:{port}: {resp}"
    if isinstance(error, DeferredTimeout):
        return f"{host}:{port}: no answer within {timeout:g}s"
    return f"{host}:{port}: {type(error).__name__}: {error}"


class SmtpConnector(ConnectorService):
    """
    :param reactor: for the connections and timeouts.
    :param trust_root: the CA to verify the server's certificate against
        (``None``: the platform's trust store); tests pass their own.
    """

    watches_stalls = False  # nothing is received, so nothing can stall

    def __init__(
        self, reactor: Any, config: SmtpConfig, pipeline: Any, store: Any, notifier: Any = None,
        environ: Mapping[str, str] = os.environ, trust_root: Any = None,
    ) -> None:
        super().__init__("smtp", reactor, config, pipeline, store, notifier)
        self.password = credential(config, "password", environ)
        self.trust_root = trust_root
        self.sent = 0
        self.last_sent: float | None = None
        self.last_failed: float | None = None

    def run_once(self) -> Deferred:
        """Ready once the configuration can work; then wait, there is no connection to keep."""
        if not is_address(self.config.sender):
            return fail(Terminal("connectors.smtp.sender is not an email address"))
        if self.config.user and not self.password:
            return fail(Terminal(f"smtp.user is set but no password (set {self.config.password_env})"))
        self.up()
        return Deferred()

    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Deferred:
        """Mail ``text`` to the address ``chat_id``."""
        if not is_address(chat_id):
            return fail(SmtpError(f"not an email address: {chat_id!r}"))
        if self.config.to and chat_id not in self.config.to:
            return fail(SmtpError(f"{chat_id} is not in connectors.smtp.to"))
        message = build_message(self.config.sender, chat_id, text, dedupe_key, self.clock.seconds())
        d = self._transmit(chat_id, message.as_bytes())
        d.addCallbacks(self._sent, self._failed, callbackArgs=(chat_id, dedupe_key))
        return d

    def _transmit(self, to: str, payload: bytes) -> Deferred:
        """One SMTP transaction on a new connection; cancelling (the timeout) aborts it."""
        config = self.config

        def cancel(_: Deferred) -> None:
            factory.sendFinished = True
            if factory.currentProtocol is not None:
                factory.currentProtocol.transport.abortConnection()
            else:
                connector.disconnect()

        result = Deferred(cancel)
        factory = ESMTPSenderFactory(
            config.user.encode("utf-8") if config.user else None,
            self.password.encode("utf-8") if config.user else None,
            config.sender, [to], BytesIO(payload), result, retries=0, timeout=config.timeout,
            contextFactory=optionsForClientTLS(config.host, trustRoot=self.trust_root) if config.starttls else None,
            heloFallback=False, requireAuthentication=bool(config.user), requireTransportSecurity=config.starttls,
        )
        connector = self.clock.connectTCP(config.host, config.port, factory, timeout=config.timeout)
        return result.addTimeout(config.timeout, self.clock)

    def _sent(self, _: Any, to: str, dedupe_key: str) -> None:
        self.sent += 1
        self.last_sent = self.clock.seconds()
        log(SMTP_SENT, to=to, dedupe_key=dedupe_key)

    def secrets(self) -> list[str]:
        """The password, and the SASL PLAIN forms AUTH puts on the wire."""
        return [*super().secrets(), *sasl_forms(self.config.user, self.password)]

    def _failed(self, failure: Any) -> None:
        self.last_error = self.scrub(describe(failure, self.config.host, self.config.port, self.config.timeout))
        self.last_failed = self.clock.seconds()
        log(SMTP_SEND_FAILED, level="warn", error=self.last_error)
        raise SmtpError(self.last_error)

    def health(self) -> dict[str, Any]:
        """The base detail (``last_error`` is the last failed send's) and when mail last went out or failed."""
        return {**super().health(), "sent": self.sent, "last_sent": iso(self.last_sent),
                "last_failed": iso(self.last_failed)}
