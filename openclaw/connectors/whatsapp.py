"""
WhatsApp through the official WhatsApp Business Cloud API (Meta's Graph API).

Nothing arrives on a connection of ours: Meta POSTs messages and delivery
statuses to ``/webhooks/whatsapp`` (served by the web service), signed with
the app secret.  A POST is answered 200 only once everything in it is
durable, so whatever we could not record (a drain, a store failure) is
redelivered by Meta.  ``run_once`` therefore only checks the token against
the phone number and then waits: the stall watchdog does not apply, since a
quiet WhatsApp is not a dead one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import orjson
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from openclaw import metrics
from openclaw.backoff import backoff_policy, retry_after
from openclaw.connectors.base import ConnectorService, Terminal
from openclaw.config.connectors import WhatsAppConfig, credential
from openclaw.connectors.split import split_text
from openclaw.eliotutil import log, message_type, typed
from openclaw.http import HTTPClient
from openclaw.pipeline import Busy, ShuttingDown

TEXT_LIMIT = 4096
"""The longest ``text.body`` the Cloud API accepts."""

REQUEST_TIMEOUT = 30.0
AUTH_CODES = frozenset({0, 10, 190, *range(200, 300)})
"""Graph error codes meaning the token is invalid, expired or lacks permission: retrying cannot help."""
RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131056})
"""App, account, throughput and per-recipient rate limits: wait and try again."""
RATE_RETRIES = 4
RATE_BASE = 1.0
RATE_CAP = 30.0
RATE_JITTER = 0.5
"""Rate-limited sends wait as ``Retry-After`` says, else 0.5-1 s, 1-2 s, 2-4 s, 4-8 s; a longer ask fails the send."""
MAX_PARTIAL = 1000
"""Sends that failed part-way, remembered so a retry resumes after the parts already sent."""


WHATSAPP_SENT = message_type("openclaw:whatsapp:sent", [
    typed("dedupe_key", [str], "the reply's idempotency key"), typed("length", [int], "characters"),
    typed("wamid", [str, None], "Meta's message id"),
], "one part of a text was sent", "debug")
WHATSAPP_RATE_LIMITED = message_type("openclaw:whatsapp:rate-limited", [
    typed("code", [int, None], "Meta's error code"), typed("status", [int], "HTTP status"),
    typed("delay", [int, float], "seconds waited"), typed("attempt", [int], "retries so far"),
], "a send was rate limited: waiting it out", "warn")
WHATSAPP_SUBSCRIPTION_VERIFIED = message_type("openclaw:whatsapp:subscription-verified", [],
                                              "Meta verified the webhook subscription")
WHATSAPP_SUBSCRIPTION_REFUSED = message_type("openclaw:whatsapp:subscription-refused", [
    typed("configured", [bool], "whether a verify token is configured"),
], "a subscription check with the wrong verify token", "warn")
WHATSAPP_BAD_SIGNATURE = message_type("openclaw:whatsapp:bad-signature", [
    typed("signed", [bool], "whether the request had a signature"), typed("length", [int], "body bytes"),
    typed("secret_configured", [bool], "whether an app secret is configured"), typed("peer", [str], "the sender's address"),
], "a webhook request whose signature did not match (403)", "warn")
WHATSAPP_SKIPPED = message_type("openclaw:whatsapp:skipped", [typed("what", [str], "what was skipped")],
                                "a webhook entry that is not a text for us", "debug")
WHATSAPP_WEBHOOK_FAILED = message_type("openclaw:whatsapp:webhook-failed", [typed("error", [str], "why")],
                                       "a webhook could not be recorded (500; Meta sends it again)", "error")
WHATSAPP_DELIVERY_FAILED = message_type("openclaw:whatsapp:delivery-failed", [
    typed("message_id", [str], "Meta's message id"), typed("recipient_id", [str], "who it was for"),
    typed("errors", [list], "Meta's errors"),
], "a status 'failed' for a message we sent", "warn")


@dataclass(frozen=True)
class Inbound:
    """One text message from a WhatsApp user."""

    wa_id: str
    message_id: str
    text: str
    name: str = ""


@dataclass(frozen=True)
class Status:
    """What happened to one message we sent: sent, delivered, read or failed."""

    message_id: str
    status: str
    recipient_id: str
    timestamp: str
    errors: list[dict] = field(default_factory=list)


@dataclass
class Notification:
    """The useful content of one webhook POST, and what was left out and why."""

    messages: list[Inbound] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


def signature_ok(secret: str, body: bytes, header: bytes | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is ``sha256=`` + the HMAC-SHA256 of the raw body under the app secret."""
    if not secret or not header or not header.startswith(b"sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
    return hmac.compare_digest(expected, header[len(b"sha256="):].strip().lower())


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_notification(data: Any, phone_number_id: str) -> Notification:
    """
    Text messages and statuses from a webhook body (``entry[].changes[].value``).
    Pure and total: any JSON value gives a ``Notification``; messages to another
    phone number of the same business account are skipped (we would answer
    from the wrong number).
    """
    note = Notification()
    if not isinstance(data, dict) or data.get("object") != "whatsapp_business_account":
        note.skipped.append("not a whatsapp_business_account notification")
        return note
    for entry in _dicts(data.get("entry")):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                note.skipped.append(f"field {_text(change.get('field'))}")
                continue
            metadata = value.get("metadata")
            number = _text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else ""
            if phone_number_id and number and number != phone_number_id:
                note.skipped.append(f"phone number {number}")
                continue
            names = {_text(c.get("wa_id")): _text(c["profile"].get("name"))
                     for c in _dicts(value.get("contacts")) if isinstance(c.get("profile"), dict)}
            for message in _dicts(value.get("messages")):
                _add_message(note, message, names)
            for status in _dicts(value.get("statuses")):
                _add_status(note, status)
    return note


def _add_message(note: Notification, message: dict, names: dict[str, str]) -> None:
    sender, message_id, kind = _text(message.get("from")), _text(message.get("id")), message.get("type")
    if not sender or not message_id:
        note.malformed.append("message without from or id")
    elif kind != "text":
        note.skipped.append(f"message type {_text(kind)}")
    elif not isinstance(message.get("text"), dict) or not _text(message["text"].get("body")):
        note.malformed.append(f"text message {message_id} without a body")
    else:
        note.messages.append(Inbound(sender, message_id, message["text"]["body"], names.get(sender, "")))


def _add_status(note: Notification, status: dict) -> None:
    message_id, state = _text(status.get("id")), _text(status.get("status"))
    if not message_id or not state:
        note.malformed.append("status without id or status")
        return
    errors = [{"code": e.get("code"), "title": _text(e.get("title"))[:200]} for e in _dicts(status.get("errors"))]
    note.statuses.append(Status(message_id, state, _text(status.get("recipient_id")),
                                _text(status.get("timestamp")), errors))


def graph_error(body: bytes) -> tuple[int | None, str]:
    """Meta's ``error.code`` and (shortened) ``error.message`` from an error body."""
    try:
        error = orjson.loads(body)["error"]
        code, message = error.get("code"), error.get("message")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, ""
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), _text(message)[:200]


def sent_id(body: bytes) -> str:
    """The ``wamid`` of a sent message (statuses name it), or ``""``: it is only logged."""
    try:
        return _text(orjson.loads(body)["messages"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class GraphError(Exception):
    """The Graph API refused a request (``code`` is Meta's error code, if it gave one)."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}" + (f" code {code}" if code is not None else "") + (f": {message}" if message else ""))
        self.status = status
        self.code = code


def _first(args: Mapping[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = args.get(name)
    return values[0] if values else None


def _answer(request: Any, code: int, body: dict) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body).encode()


class WhatsAppConnector(ConnectorService):
    """
    :param reactor: for the Graph API requests and timers.
    ``webhook`` is the handler to serve at ``/webhooks/whatsapp``.
    """

    watches_stalls = False  # webhooks only: silence is normal

    def __init__(
        self, reactor: Any, config: WhatsAppConfig, pipeline: Any, store: Any, notifier: Any = None,
        environ: Mapping[str, str] = os.environ, rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__("whatsapp", reactor, config, pipeline, store, notifier, rng)
        self.token = credential(config, "token", environ)
        self.app_secret = credential(config, "app_secret", environ)
        self._partial: OrderedDict[str, int] = OrderedDict()
        self.rate_backoff = backoff_policy(RATE_BASE, RATE_CAP, jitter=RATE_JITTER, rand=rng)
        # Not pooled, as before: each Graph API call on a connection of its own.
        self.http = HTTPClient(reactor, "whatsapp", persistent=False, timeout=REQUEST_TIMEOUT)

    # The "connection": a credentials check, then nothing to do but wait.

    @inlineCallbacks
    def run_once(self) -> Any:
        missing = [name for name, value in (("token", self.token), ("phone_number_id", self.config.phone_number_id),
                                            ("app_secret", self.app_secret)) if not value]
        if missing:
            # Without the app secret no webhook can be verified, so nothing would ever arrive.
            raise Terminal(f"not configured: {', '.join(missing)} (see docs/connectors.md)")
        status, _, body = yield self._request("GET", f"/{self.config.phone_number_id}")
        if status != 200:
            code, message = graph_error(body)
            if code in AUTH_CODES or code == 100:
                # 100 here: no such phone number id, or not one this token may use.
                raise Terminal(f"Graph API refused the token or phone_number_id (HTTP {status}, code {code}): {message}")
            raise GraphError(status, code, message)
        self.up()
        yield Deferred()  # nothing to read: waits until cancelled (stop, or credentials refused on a send)

    def _request(self, method: str, path: str, body: dict | None = None) -> Deferred:
        """:return: a Deferred firing with ``(status, lower-case headers, body)``."""
        d = self.http.request(method, self.config.api_url + path, json=body,
                              headers={"Authorization": f"Bearer {self.token}"})
        return d.addCallback(lambda response: (response.status, response.headers, response.body))

    # Outbound

    @inlineCallbacks
    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Any:
        parts = split_text(text, TEXT_LIMIT)
        for index in range(self._partial.pop(dedupe_key, 0), len(parts)):
            try:
                yield self._send_part(chat_id, parts[index], dedupe_key)
            except Exception:
                self._partial[dedupe_key] = index
                while len(self._partial) > MAX_PARTIAL:
                    self._partial.popitem(last=False)
                raise

    @inlineCallbacks
    def _send_part(self, wa_id: str, text: str, dedupe_key: str) -> Any:
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": wa_id,
                   "type": "text", "text": {"body": text}}
        for attempt in range(RATE_RETRIES + 1):
            status, headers, body = yield self._request("POST", f"/{self.config.phone_number_id}/messages", payload)
            if 200 <= status < 300:
                log(WHATSAPP_SENT, level="debug", dedupe_key=dedupe_key, length=len(text),
                    wamid=sent_id(body))
                return
            code, message = graph_error(body)
            error = GraphError(status, code, message)
            if code in AUTH_CODES:
                self.credentials_refused(f"Graph API refused the token on send ({error})")
                raise error
            if (status == 429 or code in RATE_LIMIT_CODES) and attempt < RATE_RETRIES:
                asked = retry_after(headers.get("retry-after"))
                if asked is not None and asked > RATE_CAP:
                    raise error
                delay = asked if asked is not None else self.rate_backoff(attempt)
                log(WHATSAPP_RATE_LIMITED, level="warn", code=code, status=status,
                    delay=round(delay, 2), attempt=attempt)
                yield deferLater(self.clock, delay)
                continue
            raise error

    # Inbound: the webhook

    def webhook(self, request: Any) -> Any:
        """``GET``: Meta's subscription check; ``POST``: a signed notification."""
        if request.method == b"GET":
            return self._verify_subscription(request)
        return self._notification(request)

    def _verify_subscription(self, request: Any) -> bytes:
        token = _first(request.args, b"hub.verify_token") or b""
        expected = self.config.verify_token.encode("utf-8")
        if _first(request.args, b"hub.mode") == b"subscribe" and expected and hmac.compare_digest(token, expected):
            log(WHATSAPP_SUBSCRIPTION_VERIFIED)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"X-Content-Type-Options", b"nosniff")
            return _first(request.args, b"hub.challenge") or b""
        metrics.connector_refused.labels(self.name, "bad_verify_token").inc()
        log(WHATSAPP_SUBSCRIPTION_REFUSED, level="warn", configured=bool(expected))
        request.setResponseCode(403)
        return b"forbidden"

    @inlineCallbacks
    def _notification(self, request: Any) -> Any:
        request.content.seek(0)
        raw = request.content.read()
        header = request.getHeader(b"X-Hub-Signature-256")
        if not signature_ok(self.app_secret, raw, header.encode("latin-1") if isinstance(header, str) else header):
            metrics.connector_refused.labels(self.name, "bad_signature").inc()
            log(WHATSAPP_BAD_SIGNATURE, level="warn", signed=header is not None, length=len(raw),
                secret_configured=bool(self.app_secret), peer=getattr(request.getClientAddress(), "host", ""))
            return _answer(request, 403, {"error": "bad signature"})
        if not self.running:
            return _answer(request, 503, {"error": "not running"})
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            self.malformed("webhook", f"not JSON ({len(raw)} bytes)")
            return _answer(request, 400, {"error": "not JSON"})
        note = parse_notification(data, self.config.phone_number_id)
        for what in note.skipped:
            log(WHATSAPP_SKIPPED, level="debug", what=what)
        for problem in note.malformed:
            self.malformed("webhook", problem)
        try:
            for status in note.statuses:
                yield self._record_status(status)
            for message in note.messages:
                yield self.receive_message(message.wa_id, message.wa_id, message.text, message.message_id,
                                           message.name)
        except ShuttingDown:
            return _answer(request, 503, {"error": "shutting down"})  # Meta retries later
        except Busy:
            return _answer(request, 503, {"error": "busy"})  # nothing more recorded; Meta retries later
        except Exception as e:
            log(WHATSAPP_WEBHOOK_FAILED, level="error", error=repr(e))
            return _answer(request, 500, {"error": "not recorded"})
        return _answer(request, 200, {"ok": True})

    def _record_status(self, status: Status) -> Deferred:
        if status.status == "failed":
            log(WHATSAPP_DELIVERY_FAILED, level="warn", message_id=status.message_id,
                recipient_id=status.recipient_id, errors=status.errors)
        return self.store.append_journal("whatsapp_status", self.clock.seconds(), asdict(status))
