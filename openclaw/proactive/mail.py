"""
The mail watch: one IMAP connection per configured mailbox, telling the
owner about important new mail.

Per mailbox the store keeps ``mail:<name>`` = ``{uidvalidity, last_uid}``.
The first connect ever records the newest UID as seen (no flood of old
mail); a changed UIDVALIDITY (the server renumbered the mailbox) resets to
the current newest the same way.  New mail is every UID above ``last_uid``,
read with ``BODY.PEEK`` from an ``EXAMINE``d mailbox so nothing is marked
read.  ``last_uid`` moves past a mail only after its notification is queued,
and the notification's dedupe key (``mail:<name>:<uidvalidity>:<uid>``)
makes queueing it twice a no-op: a crash in between neither loses nor
repeats a mail.

The server's IDLE (RFC 2177) wakes the watcher when mail arrives, renewed
every 25 minutes since servers drop an IDLE after about 30; without it the
watcher polls every ``poll_every``.  Connection failures reconnect with
capped exponential backoff; a refused login (or a setting only a person
can fix) is ``failed`` and retried once an hour, never in a storm.
"""

from __future__ import annotations

import html
import ipaddress
import os
import random
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from typing import Any, Callable, Iterator, Mapping, Sequence

from eliot.twisted import DeferredContext, inline_callbacks
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import ClientFactory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.mail.imap4 import Command, IMAP4Client, IMAP4Exception
from twisted.python.failure import Failure
from zope.interface import implementer

from openclaw import metrics
from openclaw.backoff import backoff_policy
from openclaw.eliotutil import action_type, begin, log, message_type, typed
from openclaw.health import iso
from openclaw.interfaces import IDrainable, IReconfigurable, IStatusSource
from openclaw.config.proactive import MailConfig
from openclaw.status import StatusSource
from openclaw.proactive.importance import AskModel, consult, gist, judge

EXCERPT_BYTES = 500
"""How much of a mail's first text part is read: enough for a gist and the keywords."""
EXCERPT_CHARS = 300
FETCH_BATCH = 50
IDLE_RENEW = 25 * 60.0
COMMAND_TIMEOUT = 60.0
RETRY_BASE = 2.0
RETRY_CAP = 300.0
RETRY_JITTER = 0.2
"""A lost connection is retried after 1.6-2 s, 3.2-4 s ... at most 5 minutes."""
FAILED_RETRY = 3600.0
"""A refused login is retried this rarely: the password may be fixed, a lockout must not be provoked."""
TRANSIENT_LOGIN_CODES = ("[UNAVAILABLE]", "[INUSE]", "[LIMIT]", "[SERVERBUG]")

_FETCH_ITEMS = (
    b"(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT CONTENT-TYPE CONTENT-TRANSFER-ENCODING)] "
    b"BODY.PEEK[1.MIME] BODY.PEEK[1]<0.%d>)" % EXCERPT_BYTES
)


MAILBOX = typed("mailbox", [str], "the mailbox's name in the config")
ERROR = typed("error", [str], "why")
LAST_UID = typed("last_uid", [int], "the newest UID judged")
MAIL_CONNECT = action_type("openclaw:mail:connect", [
    MAILBOX, typed("host", [str], "IMAP host"), typed("port", [int], "IMAP port"), typed("tls", [str], "tls, starttls or none"),
    typed("user", [str], "login name"), typed("attempt", [int], "attempts since the last good one"),
], [
    typed("mode", [str], "idle or poll"), typed("uidvalidity", [int], "the mailbox's UIDVALIDITY"), LAST_UID,
], "one IMAP connection and login")
MAIL_FETCH = action_type("openclaw:mail:fetch", [MAILBOX, typed("after_uid", [int], "UIDs above this are new")], [
    typed("new", [int], "new mails"), typed("important", [int], "of them important"), LAST_UID,
], "one look for new mail", "debug")
MAIL_SEEN = message_type("openclaw:mail:seen", [
    MAILBOX, typed("uid", [int], "the mail's UID"), typed("important", [bool], "the owner is told"),
    typed("reason", [str], "why (never the sender or subject)"),
], "one new mail judged")
MAIL_FAILED = message_type("openclaw:mail:failed", [MAILBOX, ERROR, typed("retry_in", [int, float], "seconds")],
                           "login refused or a setting only a person can fix; retried hourly", "error")
MAIL_DISCONNECTED = message_type("openclaw:mail:disconnected", [MAILBOX, ERROR,
                                                                typed("retry_in", [int, float], "seconds")],
                                 "the connection ended; retrying", "warn")
MAIL_UIDVALIDITY_CHANGED = message_type("openclaw:mail:uidvalidity-changed", [
    MAILBOX, typed("old", [int, None], "the saved UIDVALIDITY"), typed("new", [int], "the server's"),
    typed("skipped_to", [int], "old mail up to this UID is not judged"),
], "the server renumbered the mailbox", "warn")


# --- Reading a fetched mail (pure) ------------------------------------------------


@dataclass(frozen=True)
class NewMail:
    uid: int
    sender: str
    subject: str
    flags: tuple[str, ...]
    excerpt: str


_parser = BytesParser(policy=policy.default)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = str(message.get(name) or "")
    except Exception:  # malformed beyond the parser's repairs: the raw value still says something
        value = next((str(v) for k, v in message.raw_items() if k.lower() == name.lower()), "")
    return " ".join(value.split())


def _text_of(part: EmailMessage) -> str:
    try:
        text = part.get_content()
    except Exception:  # cut mid-escape or an unknown charset: decode what is there
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    if not isinstance(text, str):
        return ""
    if part.get_content_subtype() == "html":
        text = re.sub(r"(?is)<(script|style)\b.*?(</\1>|$)", " ", text)
        text = re.sub(r"(?i)</?(br|p|div|li|tr|td|th|h[1-6]|table|ul|ol)\b[^>]*>", " ", text)
        text = html.unescape(re.sub(r"(?s)<[^>]*>?", "", text))  # inline tags join words
    return text


def excerpt_of(part_header: bytes, message_header: bytes, body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """
    The readable start of a mail's first part: ``body`` is up to
    ``EXCERPT_BYTES`` of it, decoded as its own MIME header says (or the
    message's, for a single-part mail); HTML loses its tags; a nested
    multipart yields its first text part.  Never raises.
    """
    header = part_header if b"content-type" in part_header.lower() else message_header
    header = header.rstrip(b"\r\n") + b"\r\n\r\n"
    try:
        part = _parser.parsebytes(header + body)
        texts = (p for p in part.walk() if p.get_content_maintype() == "text")
        first = next(texts, None)
        text = _text_of(first) if first is not None else ""
    except Exception:
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:limit]


def sender_name(from_value: str) -> str:
    """How to name a sender in one line: the display name, else the address."""
    name, addr = parseaddr(from_value)
    return " ".join(name.split()) or addr or from_value or "(unknown sender)"


def parse_fetched(values: Mapping[Any, Any]) -> NewMail | None:
    """One message of a ``UID FETCH`` as Twisted parsed it; ``None`` without a UID."""
    try:
        uid = int(values.get("UID", ""))
    except (TypeError, ValueError):
        return None
    raw = {"header": b"", "mime": b"", "text": b""}
    for key, value in values.items():
        if not (isinstance(key, tuple) and len(key) >= 2 and key[0] == "BODY" and isinstance(value, str)):
            continue
        section = key[1][0] if key[1] else ""
        name = {"HEADER.FIELDS": "header", "1.MIME": "mime", "1": "text"}.get(section)
        if name:
            raw[name] = value.encode("charmap")  # Twisted decoded the bytes as charmap
    try:
        header = _parser.parsebytes(raw["header"], headersonly=True)
        sender, subject = _header(header, "From"), _header(header, "Subject")
    except Exception:
        sender = subject = ""
    flags = tuple(f for f in values.get("FLAGS", ()) if isinstance(f, str))
    return NewMail(uid, sender, subject, flags, excerpt_of(raw["mime"], raw["header"], raw["text"]))


def notification_text(mail: NewMail) -> str:
    """``📧 sender: subject — gist`` (the gist left out when it is just the subject)."""
    subject = mail.subject or "(no subject)"
    line = f"📧 {sender_name(mail.sender)}: {subject}"
    summary = gist(mail.subject, mail.excerpt)
    return line if not summary or summary == gist(mail.subject, "") else f"{line} — {summary}"


def uid_set(uids: Sequence[int]) -> bytes:
    """An IMAP sequence set for sorted ``uids``, runs collapsed (``5:9,12``)."""
    runs: list[list[int]] = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in runs).encode("ascii")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- The IMAP client ---------------------------------------------------------------


class WatchClient(IMAP4Client):
    """
    ``IMAP4Client`` with what the watch needs and Twisted lacks: IDLE, a
    Deferred for the greeting, notice of every untagged ``EXISTS`` (also those
    that arrive inside another command's reply), and one fetch for headers,
    flags and the start of the text.
    """

    def __init__(self, context: Any = None) -> None:
        super().__init__(context)
        self.greeted: Deferred = Deferred()
        self.exists_seen = False
        self.on_exists: Callable[[], None] | None = None
        self.idles = 0
        self._idling = False
        self._done_wanted = False

    def serverGreeting(self, caps: Any) -> None:
        if not self.greeted.called:
            self.greeted.callback(caps)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self.greeted.called:
            self.greeted.errback(reason)

    def _defaultHandler(self, tag: bytes, rest: bytes) -> None:
        if tag == b"*":
            parts = rest.split(None, 2)
            if len(parts) >= 2 and parts[1].upper() == b"EXISTS":
                self.exists_seen = True
                if self.on_exists is not None:
                    self.on_exists()
        super()._defaultHandler(tag, rest)

    def idle(self) -> Deferred:
        """Enter IDLE; the Deferred fires when the server ends it (after ``done()``)."""
        self.idles += 1
        self._idling = self._done_wanted = False
        return self.sendCommand(Command(b"IDLE", None, (), self._idle_started))

    def _idle_started(self, rest: bytes) -> None:
        self._idling = True
        if self._done_wanted:
            self.done()

    def done(self) -> None:
        """Leave IDLE (once the server has confirmed it: DONE before ``+`` is a protocol error)."""
        if self._idling:
            self._idling = False
            self.sendLine(b"DONE")
        else:
            self._done_wanted = True

    def fetch_new(self, uids: Sequence[int]) -> Deferred:
        """:return: a Deferred firing with ``{uid: NewMail}`` for those of ``uids`` still there."""
        d = self.sendCommand(Command(b"UID FETCH", uid_set(uids) + b" " + _FETCH_ITEMS, wantResponse=(b"FETCH",)))
        d.addCallback(self._cbFetch, ["FLAGS"], True)
        d.addCallback(lambda by_seq: {
            mail.uid: mail for mail in map(parse_fetched, by_seq.values()) if mail is not None and mail.uid in uids
        })
        return d


class LoginRefused(Exception):
    """Something only a person can fix: the password, a setting.  Retried hourly."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _describe(error: BaseException) -> str:
    """``Type: message`` for health and logs; IMAP errors carry the server's words as bytes."""
    args = error.args
    text = args[0].decode("utf-8", "replace") if len(args) == 1 and isinstance(args[0], bytes) else str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _ignore_cancel(failure: Failure) -> None:
    failure.trap(CancelledError)


# --- One mailbox -------------------------------------------------------------------


class MailboxWatcher:
    """
    The connection loop of one mailbox.  ``state`` is ``connecting``,
    ``watching`` (``mode`` idle or poll), ``backoff``, ``failed`` or ``stopped``.
    """

    def __init__(
        self, config: MailConfig, reactor: Any, clock: Any, store: Any, notifier: Any,
        environ: Mapping[str, str], ask_model: AskModel | None, rand: Callable[[], float],
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.store = store
        self.notifier = notifier
        self.environ = environ
        self.ask_model = ask_model
        self.backoff = backoff_policy(RETRY_BASE, RETRY_CAP, jitter=RETRY_JITTER, rand=rand)
        self.key = f"mail:{config.name}"
        self.state = "stopped"
        self.mode = ""
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.last_uid: int | None = None
        self.uidvalidity: int | None = None
        self.attempts = 0
        self.failures = 0
        self.proto: WatchClient | None = None
        self._connecting: Deferred | None = None
        self._wake: Deferred | None = None
        self._running: Deferred | None = None
        self._stopping = False
        self._waiters: list[tuple[Callable[[MailboxWatcher], bool], Deferred]] = []

    # Status

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state, "mode": self.mode, "last_error": self.last_error,
            "last_check": iso(self.last_check), "last_uid": self.last_uid, "attempts": self.attempts,
        }

    def wait_for(self, predicate: Callable[[MailboxWatcher], bool]) -> Deferred:
        """A Deferred firing once ``predicate(self)`` holds (checked after every change)."""
        if predicate(self):
            return succeed(self)
        d: Deferred = Deferred()
        self._waiters.append((predicate, d))
        return d

    def _changed(self, state: str | None = None, error: str | None = None) -> None:
        if state is not None:
            self.state = state
        if error is not None:
            self.last_error = error
        waiting, self._waiters = self._waiters, []
        for predicate, d in waiting:
            if predicate(self):
                d.callback(self)
            else:
                self._waiters.append((predicate, d))

    # Life cycle

    def start(self) -> None:
        self._stopping = False
        self._running = self._run()

    def stop(self) -> Deferred:
        """Take no new work: end waits and connection attempts, let a mail being handled finish."""
        self._stopping = True
        if self._wake is not None and not self._wake.called:
            self._wake.cancel()
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        if self.state == "connecting" and self.proto is not None:
            self.proto.transport.abortConnection()
        return self._running if self._running is not None else succeed(None)

    def hurry(self) -> None:
        if self.proto is not None:
            self.proto.transport.abortConnection()

    @inlineCallbacks
    def _run(self) -> Any:
        while not self._stopping:
            try:
                yield self._session()
                continue
            except LoginRefused as e:
                delay, state, error = FAILED_RETRY, "failed", str(e)
                log(MAIL_FAILED, level="error", mailbox=self.config.name, error=error, retry_in=delay)
            except Exception as e:
                if self._stopping:
                    break
                self.failures += 1
                delay = self.backoff(self.failures - 1)
                state, error = "backoff", _describe(e)
                log(MAIL_DISCONNECTED, level="warn", mailbox=self.config.name,
                    error=error, retry_in=round(delay, 1))
            wait = self._sleep(delay)  # scheduled before anyone hears of the new state
            self._changed(state, error)
            yield wait
        self._changed("stopped")

    def _sleep(self, seconds: float) -> Deferred:
        """Wait on the clock; ``stop()`` ends the wait early."""
        self._wake = d = Deferred(lambda _: call.cancel())
        call = self.clock.callLater(seconds, d.callback, None)
        return d.addErrback(_ignore_cancel)

    def _timed(self, d: Deferred) -> Deferred:
        """Bound one network step: a silent server must not hang the watch."""
        return d.addTimeout(COMMAND_TIMEOUT, self.clock)

    # One connection

    @inlineCallbacks
    def _session(self) -> Any:
        self.attempts += 1
        self._changed("connecting")
        try:
            action = begin(MAIL_CONNECT, mailbox=self.config.name, host=self.config.host,
                           port=self.config.port, tls=self.config.tls, user=self.config.user,
                           attempt=self.attempts)
            with action.context():
                d = DeferredContext(maybeDeferred(self._open, action))
                d.addActionFinish()
            yield d.result
            proto = self.proto
            self._changed("watching")
            while not self._stopping:
                yield self._check(proto)
                self.failures = 0  # only a connection that works resets the backoff
                if self._stopping:
                    break
                if self.mode == "idle":
                    yield self._idle(proto)
                else:
                    yield self._sleep(self.config.poll_every)
        finally:
            self.mode = ""
            if self.proto is not None:
                self.proto.transport.loseConnection()
                self.proto = None

    def _password(self) -> str:
        config = self.config
        if config.tls == "none" and not _is_loopback(config.host):
            raise LoginRefused("tls: none would send the password in clear; it is only for 127.0.0.1")
        password = config.password or self.environ.get(config.password_env, "")
        if not password:
            raise LoginRefused(f"password_env: {config.password_env or '(unset)'} is empty or not set")
        return password

    def _tls_options(self) -> Any:
        trust = None
        if self.config.ca_file:
            try:
                with open(self.config.ca_file, "rb") as f:
                    trust = Certificate.loadPEM(f.read())
            except (OSError, ValueError) as e:
                raise LoginRefused(f"ca_file: cannot read {self.config.ca_file} ({e})") from None
        return optionsForClientTLS(self.config.host, trustRoot=trust)

    @inline_callbacks
    def _open(self, action: Any) -> Any:
        """Connect, log in, EXAMINE and load the saved position; sets ``proto`` and ``mode``."""
        config = self.config
        password = self._password()
        endpoint: Any = HostnameEndpoint(self.reactor, config.host, config.port, timeout=COMMAND_TIMEOUT)
        if config.tls == "tls":
            endpoint = wrapClientTLS(self._tls_options(), endpoint)
        factory = ClientFactory.forProtocol(WatchClient)
        factory.noisy = False
        self._connecting = self._timed(endpoint.connect(factory))
        self.proto = proto = yield self._connecting
        self._connecting = None
        yield self._timed(proto.greeted)
        if config.tls == "starttls":
            yield self._timed(proto.getCapabilities())
            try:
                yield self._timed(proto.startTLS(self._tls_options()))
            except IMAP4Exception as e:
                raise LoginRefused(f"starttls: {_describe(e)}") from None
        try:
            yield self._timed(proto.login(config.user.encode(), password.encode()))
        except IMAP4Exception as e:
            reason = _describe(e)
            if any(code in reason for code in TRANSIENT_LOGIN_CODES):
                raise
            raise LoginRefused(f"login refused: {reason}") from None
        caps = yield self._timed(proto.getCapabilities(useCache=False))
        info = yield self._timed(proto.examine(config.mailbox))
        yield self._sync(info)
        self.mode = "idle" if config.idle and b"IDLE" in caps else "poll"
        action.add_success_fields(mode=self.mode, uidvalidity=self.uidvalidity, last_uid=self.last_uid)

    @inlineCallbacks
    def _sync(self, info: dict) -> Any:
        """Load ``{uidvalidity, last_uid}``, or start from the newest mail when new or renumbered."""
        if "UIDVALIDITY" not in info or "UIDNEXT" not in info:
            raise IMAP4Exception(f"the server did not report UIDVALIDITY and UIDNEXT for {self.config.mailbox}")
        uidvalidity, newest = info["UIDVALIDITY"], info["UIDNEXT"] - 1
        saved = yield self.store.get_state(self.key)
        if not isinstance(saved, dict) or saved.get("uidvalidity") != uidvalidity:
            if isinstance(saved, dict):
                log(MAIL_UIDVALIDITY_CHANGED, level="warn", mailbox=self.config.name,
                    old=saved.get("uidvalidity"), new=uidvalidity, skipped_to=newest)
            saved = {"uidvalidity": uidvalidity, "last_uid": newest}
            yield self.store.set_state(self.key, saved)
        self.uidvalidity, self.last_uid = uidvalidity, int(saved["last_uid"])

    # New mail

    @inlineCallbacks
    def _check(self, proto: WatchClient) -> Any:
        # Debug: every poll or IDLE wake-up has one; each mail seen gets an info line.
        action = begin(MAIL_FETCH, level="debug", mailbox=self.config.name, after_uid=self.last_uid)
        with action.context():
            d = DeferredContext(maybeDeferred(self._fetch_new, proto, action))
            d.addActionFinish()
        yield d.result
        self.last_check = self.clock.seconds()
        self._changed()

    @inline_callbacks
    def _fetch_new(self, proto: WatchClient, action: Any) -> Any:
        proto.exists_seen = False
        yield self._timed(proto.noop())  # lets the server tell us of mail it has not announced
        found = yield self._timed(proto.search(f"UID {self.last_uid + 1}:*", uid=True))
        # "n:*" always includes the newest UID, even when it is older than n.
        new = sorted(uid for uid in set(found) if uid > self.last_uid)
        important = 0
        for chunk in _chunks(new, FETCH_BATCH):
            fetched = yield self._timed(proto.fetch_new(chunk))
            for uid in chunk:
                if self._stopping:
                    break
                if uid in fetched:
                    important += yield self._consider(fetched[uid])
                yield self._advance(uid)
        action.add_success_fields(new=len(new), important=important, last_uid=self.last_uid)

    @inlineCallbacks
    def _consider(self, mail: NewMail) -> Any:
        name = self.config.name
        verdict = judge(mail.sender, mail.subject, mail.flags, mail.excerpt, self.config)
        verdict = yield consult(verdict, self.ask_model, mail.sender, mail.subject, mail.excerpt)
        metrics.mail_notified.labels(name, "true" if verdict.important else "false").inc()
        log(MAIL_SEEN, mailbox=name, uid=mail.uid, important=verdict.important, reason=verdict.reason)
        if verdict.important:
            yield self.notifier.notify("info", f"mail:{name}", notification_text(mail),
                                       dedupe_key=f"mail:{name}:{self.uidvalidity}:{mail.uid}",
                                       target=self.config.target)
        return int(verdict.important)

    def _advance(self, uid: int) -> Deferred:
        d = self.store.set_state(self.key, {"uidvalidity": self.uidvalidity, "last_uid": uid})

        def advanced(_: Any) -> None:
            self.last_uid = uid
            self._changed()

        return d.addCallback(advanced)

    @inlineCallbacks
    def _idle(self, proto: WatchClient) -> Any:
        """Wait in IDLE until mail arrives, the renewal is due, or the watch stops."""
        if proto.exists_seen:
            return  # mail came in during the check: look again before idling
        self._wake = wake = Deferred()

        def wake_up(*_: Any) -> None:
            if not wake.called:
                wake.callback(None)

        ended_with: list[Any] = []

        def ended(result: Any) -> None:
            ended_with.append(result)
            wake_up()

        proto.on_exists = wake_up
        renew = self.clock.callLater(IDLE_RENEW, wake_up)
        finished = proto.idle().addBoth(ended)
        try:
            yield wake
        except CancelledError:
            return  # stopping: closing the connection ends the IDLE
        finally:
            proto.on_exists = None
            if renew.active():
                renew.cancel()
        if not ended_with:
            proto.done()
            yield self._timed(finished)
        if isinstance(ended_with[0], Failure):
            ended_with[0].raiseException()


# --- The service -------------------------------------------------------------------


@implementer(IDrainable, IReconfigurable, IStatusSource)
class MailWatchService(StatusSource, Service):
    """
    Watches every configured mailbox.

    :param reactor: makes the connections.
    :param clock: runs the timers (backoff, polling, IDLE renewal); the
        reactor unless a test passes a ``Clock``.
    :param notifier: ``openclaw.notify.Notifier``.
    :param ask_model: ``importance.model_judge(brain)`` when a model brain
        is configured, else ``None`` (rules only).
    """

    def __init__(
        self, reactor: Any, store: Any, notifier: Any, mailboxes: Sequence[MailConfig],
        environ: Mapping[str, str] = os.environ, ask_model: AskModel | None = None,
        clock: Any = None, rand: Callable[[], float] = random.random,
    ) -> None:
        self._watcher = lambda m: MailboxWatcher(m, reactor, clock or reactor, store, notifier, environ,
                                                 ask_model, rand)
        self.watchers = {m.name: self._watcher(m) for m in mailboxes}

    @inlineCallbacks
    def reconfigure(self, config: Any) -> Any:
        """Mailboxes compared by name: changed and removed ones stop, added and changed ones start."""
        wanted = {m.name: m for m in config.mail}
        for name, watcher in list(self.watchers.items()):
            if wanted.get(name) != watcher.config:
                del self.watchers[name]
                yield watcher.stop()
        for name, mailbox in wanted.items():
            if name not in self.watchers:
                self.watchers[name] = watcher = self._watcher(mailbox)
                if self.running:
                    watcher.start()

    def startService(self) -> None:
        Service.startService(self)
        for watcher in self.watchers.values():
            watcher.start()

    status_key = "mail"

    def status(self) -> dict[str, dict[str, Any]]:
        return self.health()

    def problems(self) -> list[str]:
        return [f"mailbox {name} failed" for name, detail in self.health().items() if detail.get("state") == "failed"]

    def health(self) -> dict[str, dict[str, Any]]:
        """Each mailbox's state, last error, last check and last UID seen, by name."""
        return {name: w.health() for name, w in self.watchers.items()}

    def drain(self) -> Deferred:
        return gatherResults([w.stop() for w in self.watchers.values()]).addCallback(lambda _: None)

    def hurry(self) -> None:
        for watcher in self.watchers.values():
            watcher.hurry()

    def stopService(self) -> Deferred:
        d = self.drain()
        Service.stopService(self)
        return d
