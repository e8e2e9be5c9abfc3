"""
Telegram through the Bot API (HTTPS and JSON), by long polling or by webhook.

Polling: ``getUpdates`` is held by Telegram for up to ``poll_timeout``
seconds.  The offset that confirms a batch is sent (and stored under
``telegram:offset``, so a restart does not re-read) only once every update
of the batch is durable: a crash or a drain re-reads, it never loses.

Webhook: Telegram POSTs each update to ``/webhooks/telegram`` with the
secret token in a header, and redelivers until it gets a 2xx, so the answer
is 200 only once the update is durable (503 while draining).  openclaw does
not know its public URL: the operator registers it with ``setWebhook``.
"""

from __future__ import annotations

import hmac
import math
import os
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.task import deferLater

from openclaw import metrics
from openclaw.connectors.base import ConnectorService, Terminal
from openclaw.config.connectors import TelegramConfig, credential
from openclaw.connectors.split import split_text, utf16_length
from openclaw.eliotutil import log, message_type, typed
from openclaw.http import HTTPClient
from openclaw.pipeline import Busy, ShuttingDown

TEXT_LIMIT = 4096
"""sendMessage's limit, in UTF-16 code units."""

REQUEST_TIMEOUT = 30.0
POLL_MARGIN = 10.0
"""How much longer than ``poll_timeout`` a getUpdates request may take before it is abandoned."""

MAX_RETRY_AFTER = 30.0
BUSY_PAUSE = 1.0
"""Seconds polling waits before reading again an update the pipeline was too busy to take."""
"""The longest 429 pause waited for in place; a longer one fails the call (the outbox retries later)."""

WEBHOOK_CHECK = 45.0
"""How often webhook mode calls getMe when there is no stall bound to stay under."""

OFFSET_KEY = "telegram:offset"
SECRET_HEADER = b"X-Telegram-Bot-Api-Secret-Token"
REJECTED = {401: "401 Unauthorized", 404: "404 Not Found"}
MAX_REMEMBERED_SENDS = 1000

_MENTION = re.compile(r"(/\w+)@(\w+)")
_NUMERIC = re.compile(r"-?\d+")


CONNECTOR = typed("connector", [str], "the connector's name")
CONFLICT = message_type("openclaw:connector:conflict", [CONNECTOR, typed("hint", [str], "what to do")],
                        "Telegram answered 409: another poller or a webhook is set", "warn")
PAUSED = message_type("openclaw:connector:paused", [CONNECTOR, typed("reason", [str], "why: draining or busy")],
                      "polling stopped taking updates: for good while the daemon drains, for BUSY_PAUSE when busy")
SKIPPED = message_type("openclaw:connector:skipped", [CONNECTOR, typed("reason", [str], "why")],
                       "an update that is not a text for us", "debug")
RATE_LIMITED = message_type("openclaw:connector:rate-limited", [
    CONNECTOR, typed("method", [str], "the Bot API method"), typed("retry_after", [int, float], "seconds waited"),
], "Telegram answered 429: waiting it out", "warn")
WEBHOOK_REFUSED = message_type("openclaw:connector:webhook-refused", [
    CONNECTOR, typed("reason", [str], "missing or wrong secret token"),
], "a webhook request without the right secret was refused (401)", "warn")
WEBHOOK_FAILED = message_type("openclaw:connector:webhook-failed", [CONNECTOR, typed("error", [str], "why")],
                              "a webhook update could not be recorded (500; Telegram sends it again)", "error")


class ApiError(Exception):
    """The Bot API refused a call (or answered something unusable); never carries the token."""

    def __init__(self, method: str, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {status} {description}")
        self.method = method
        self.status = status
        self.description = description
        self.retry_after = retry_after


class BadReply(ApiError):
    """The answer was not the JSON the Bot API speaks."""


class MalformedUpdate(ValueError):
    """An update without the fields a message needs."""


@dataclass(frozen=True)
class Incoming:
    """A text message as openclaw needs it; ``message_id`` is unique per bot (``chat:message``)."""

    chat_id: str
    sender_id: str
    sender_name: str
    message_id: str
    text: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _retry_after(data: dict) -> float | None:
    parameters = data.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def parse_reply(method: str, status: int, body: bytes) -> Any:
    """
    The ``result`` of a Bot API answer.  :raise ApiError: for an error answer
    (with the ``retry_after`` a 429 asks for); ``BadReply`` for a 200 that is
    not the Bot API's JSON (a proxy's HTML error page is just an error).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise (BadReply if status == 200 else ApiError)(method, status, "response is not a JSON object")
    if status == 200 and data.get("ok") is True and "result" in data:
        return data["result"]
    code = data.get("error_code")
    if status == 200 and _is_int(code):
        status = code
    description = data.get("description")
    description = description[:200] if isinstance(description, str) else "error"
    raise ApiError(method, status, description, _retry_after(data))


def addressed(text: str, username: str | None) -> str | None:
    """
    ``text`` with a ``/command@bot`` suffix removed when it names this bot
    (``username``; any bot while unknown); ``None`` when it names another bot.
    """
    match = _MENTION.match(text)
    if match is None:
        return text
    if username and match.group(2).lower() != username.lower():
        return None
    return match.group(1) + text[match.end():]


def _field(parent: Any, key: str, path: str) -> int:
    value = parent.get(key) if isinstance(parent, dict) else None
    if not _is_int(value):
        raise MalformedUpdate(f"{path} is not an integer")
    return value


def parse_update(update: Any, username: str | None) -> Incoming | None:
    """
    The text message in an ``Update``, or ``None`` for what openclaw does not
    read (stickers, photos, other update kinds, commands for another bot).

    :raise MalformedUpdate: when a message lacks its ids or has the wrong types.
    """
    if not isinstance(update, dict):
        raise MalformedUpdate("update is not an object")
    message = update.get("message")
    if message is None:
        return None
    if not isinstance(message, dict):
        raise MalformedUpdate("message is not an object")
    chat_id = _field(message.get("chat"), "id", "message.chat.id")
    sender = message.get("from")
    sender_id = _field(sender, "id", "message.from.id")
    message_id = _field(message, "message_id", "message.message_id")
    text = message.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise MalformedUpdate("message.text is not a string")
    text = addressed(text, username)
    if not text:
        return None
    names = [sender.get(k) for k in ("first_name", "username")]
    name = next((n for n in names if isinstance(n, str) and n), "")
    return Incoming(str(chat_id), str(sender_id), name, f"{chat_id}:{message_id}", text)


def _seconds(value: float) -> float | int:
    """Telegram's ``timeout`` is whole seconds; fractions only occur in tests against a local server."""
    return int(value) if float(value).is_integer() else value


def _shielded(d: Deferred) -> Deferred:
    """
    ``d``'s result, through a Deferred whose cancelling leaves ``d`` running:
    a message cancelled half-recorded would sit unprocessed until a restart.
    """
    out: Deferred = Deferred()
    d.chainDeferred(out)
    return out


class TelegramConnector(ConnectorService):
    """
    :param reactor: for the network; ``clock`` (default ``reactor``) for
        timeouts, 429 pauses, backoff and the watchdog.
    """

    def __init__(
        self, reactor: Any, config: TelegramConfig, pipeline: Any, store: Any, notifier: Any = None,
        environ: Mapping[str, str] = os.environ, clock: Any = None, rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__("telegram", clock or reactor, config, pipeline, store, notifier, rng)
        self.reactor = reactor
        self.token = credential(config, "token", environ)
        self.http = HTTPClient(reactor, "telegram", clock=self.clock)
        self.username: str | None = None
        self.offset: int | None = None
        # Parts already sent of a text whose later part failed, so the
        # outbox's retry does not send them twice.
        self._sent_parts: OrderedDict[str, int] = OrderedDict()

    # The connection

    def run_once(self) -> Deferred:
        return self._run()

    @inlineCallbacks
    def _run(self) -> Any:
        if not self.token:
            raise Terminal(f"no bot token (set {self.config.token_env} or connectors.telegram.token)")
        try:
            yield self._get_me()
            self.up()
            if self.config.mode == "webhook":
                yield self._check_now_and_then()
            else:
                yield self._poll()
        except ApiError as e:
            if e.status in REJECTED:
                raise Terminal(f"telegram rejected the bot token ({REJECTED[e.status]})") from None
            if e.status == 409:
                log(CONFLICT, level="warn", connector=self.name,
                    hint="another client polls this bot or a webhook is set (deleteWebhook or stop it)")
            raise

    @inlineCallbacks
    def _get_me(self) -> Any:
        me = yield self._call("getMe", {}, REQUEST_TIMEOUT)
        self.poke()
        username = me.get("username") if isinstance(me, dict) else None
        self.username = username if isinstance(username, str) else None

    @inlineCallbacks
    def _poll(self) -> Any:
        if self.offset is None:
            stored = yield self.store.get_state(OFFSET_KEY)
            self.offset = stored if _is_int(stored) else None
        while True:
            params: dict[str, Any] = {"timeout": _seconds(self.config.poll_timeout), "allowed_updates": ["message"]}
            if self.offset is not None:
                params["offset"] = self.offset
            try:
                updates = yield self._call("getUpdates", params, self.config.poll_timeout + POLL_MARGIN)
                if not isinstance(updates, list):
                    raise BadReply("getUpdates", 200, "result is not a list")
            except BadReply as e:
                self.malformed("getUpdates", str(e))
                raise
            self.poke()
            try:
                yield self._record(updates)
            except Busy:
                # The rest of the batch is unconfirmed: read again after a pause.
                log(PAUSED, connector=self.name, reason="busy")
                yield deferLater(self.clock, BUSY_PAUSE)
            except ShuttingDown:
                # Unconfirmed, the batch is read again later; until stopService
                # (or the watchdog) ends this connection, fetch nothing.
                log(PAUSED, connector=self.name, reason="draining")
                yield Deferred()

    @inlineCallbacks
    def _record(self, updates: list) -> Any:
        """
        Take each update, then confirm the batch; on ``ShuttingDown`` or
        ``Busy`` confirm the updates taken and fail: the rest is read again.
        """
        offset = self.offset
        for update in updates:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not _is_int(update_id):
                self.malformed("update", "no integer update_id")
                continue
            try:
                yield self._take(update)
            except (Busy, ShuttingDown):
                yield self._confirm(offset)
                raise
            offset = max(offset or 0, update_id + 1)
        yield self._confirm(offset)

    @inlineCallbacks
    def _confirm(self, offset: int | None) -> Any:
        if offset != self.offset:
            yield self.store.set_state(OFFSET_KEY, offset)
            self.offset = offset

    def _take(self, update: Any) -> Deferred:
        """One update into the durable path; fires once it is safe to confirm."""
        try:
            incoming = parse_update(update, self.username)
        except MalformedUpdate as e:
            self.malformed("update", str(e))
            return succeed(None)
        if incoming is None:
            log(SKIPPED, level="debug", connector=self.name, reason="not a text for us")
            return succeed(None)
        return _shielded(self.receive_message(
            incoming.chat_id, incoming.sender_id, incoming.text, incoming.message_id, incoming.sender_name))

    @inlineCallbacks
    def _check_now_and_then(self) -> Any:
        """Webhook mode: nothing arrives here, so getMe now and then proves the token and the API."""
        every = self.config.stall_timeout / 2 or WEBHOOK_CHECK
        while True:
            yield deferLater(self.clock, every)
            yield self._get_me()

    # The Bot API

    def _post(self, method: str, params: dict, timeout: float) -> Deferred:
        """
        Every method but ``sendMessage`` may be sent twice: reads, and
        ``getUpdates`` confirms by offset.  So they are resent once on a
        fresh connection when a pooled one turns out closed.
        """
        d = self.http.request("POST", f"{self.config.api_url}/bot{self.token}/{method}", json=params,
                              timeout=timeout, idempotent=method != "sendMessage")
        return d.addCallback(lambda response: (response.status, response.body))

    @inlineCallbacks
    def _call(self, method: str, params: dict, timeout: float) -> Any:
        """One Bot API call, waiting out 429s up to ``MAX_RETRY_AFTER``; the ``result``, else ``ApiError``."""
        while True:
            status, body = yield self._post(method, params, timeout)
            try:
                return parse_reply(method, status, body)
            except ApiError as e:
                if e.retry_after is None or e.retry_after > MAX_RETRY_AFTER:
                    raise
                log(RATE_LIMITED, level="warn", connector=self.name, method=method,
                    retry_after=e.retry_after)
                yield deferLater(self.clock, e.retry_after)

    # Outbound

    @inlineCallbacks
    def send_text(self, chat_id: str, text: str, dedupe_key: str) -> Any:
        """Send ``text`` in parts, in order; a retry with the same ``dedupe_key`` resumes after the parts sent."""
        parts = split_text(text, TEXT_LIMIT, utf16_length)
        done = self._sent_parts.pop(dedupe_key, 0)
        chat: int | str = int(chat_id) if _NUMERIC.fullmatch(chat_id) else chat_id
        try:
            for part in parts[done:]:
                yield self._call("sendMessage", {"chat_id": chat, "text": part}, REQUEST_TIMEOUT)
                done += 1
        finally:
            if 0 < done < len(parts):
                self._sent_parts[dedupe_key] = done
                while len(self._sent_parts) > MAX_REMEMBERED_SENDS:
                    self._sent_parts.popitem(last=False)

    # Webhook

    def webhook(self, request: Any) -> Any:
        """
        ``/webhooks/telegram``: 401 without the secret token; 200 once the
        update is durable, or when it is unusable (a retry would not help);
        503 while draining or busy, so Telegram delivers it again later.  404 in
        polling mode: updates come one way only.
        """
        if self.config.mode != "webhook":
            request.setResponseCode(404)
            return b""
        given = request.getHeader(SECRET_HEADER) or b""
        secret = self.config.webhook_secret.encode()
        if not secret or not hmac.compare_digest(given, secret):
            metrics.connector_refused.labels(self.name, "unauthorized").inc()
            log(WEBHOOK_REFUSED, level="warn", connector=self.name,
                reason="missing" if not given else "wrong secret token")
            request.setResponseCode(401)
            return b""
        if request.method != b"POST":
            request.setResponseCode(405)
            return b""
        if not self.running:
            request.setResponseCode(503)
            return b""
        try:
            update = orjson.loads(request.content.read())
        except orjson.JSONDecodeError:
            self.malformed("webhook", "body is not JSON")
            return b""
        d = self._take(update)
        d.addCallbacks(lambda _: b"", self._webhook_failed, errbackArgs=(request,))
        return d

    def _webhook_failed(self, failure: Any, request: Any) -> bytes:
        if failure.check(CancelledError):
            return b""  # Telegram hung up; the update is recorded anyway and redelivered
        not_taken = failure.check(ShuttingDown, Busy)
        if not not_taken:
            log(WEBHOOK_FAILED, level="error", connector=self.name, error=repr(failure.value))
        request.setResponseCode(503 if not_taken else 500)
        return b""

    # Status and shutdown

    def health(self) -> dict[str, Any]:
        return {**super().health(), "mode": self.config.mode}

    def stopService(self) -> Deferred:
        super().stopService()
        return self.http.close()
