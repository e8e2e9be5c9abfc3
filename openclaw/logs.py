"""
Where openclaw's Eliot messages go: rotating JSON files, a readable console
line, and a bridge that brings Twisted's own log events into Eliot.

Logging is a service (the model is Tahoe-LAFS's ``_EliotLogging``) so that,
as the first child of the daemon, it starts before anything logs and stops
after everything else has finished logging.

Every destination writes only *redacted* messages: values under secret-looking
keys and every known secret value are replaced by ``<redacted>``.  A secret is
known in every form it travels in (``encoded_forms``: base64, URL-encoded,
JSON-escaped), because upstream servers echo it that way: an SMTP 535 reply
can quote the AUTH exchange, an HTTP error body the request's URL.
"""

from __future__ import annotations

import atexit
import base64
import collections
import functools
import json
import os
import re
import threading
import time
from typing import Any, Callable, Iterable
from urllib.parse import quote, quote_plus

import orjson
from eliot import add_destinations, remove_destination
from twisted.application.service import Service
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.logfile import LogFile
from twisted.python.threadable import isInIOThread

from zope.interface import implementer

from openclaw.eliotutil import LEVELS, enabled, log, set_threshold
from openclaw.interfaces import IReconfigurable

REDACTED = "<redacted>"

#: Secrets shorter than this are not scrubbed from text: redacting every "a"
#: would destroy the log and protect nothing.
MIN_SECRET_LENGTH = 8

#: A dict key whose lower-cased name contains one of these hides its strings.
SECRET_KEY_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
)

#: Warnings and errors kept in memory for the console.
RECENT_RECORDS = 500

#: Key on the twisted.logger events the console destination emits; the bridge
#: skips such events so a console line never comes back as an Eliot message.
CONSOLE_MARKER = "openclaw_console"

#: Eliot's own message types that report a failure but carry no ``log_level``.
_ELIOT_ERROR_TYPES = frozenset({"eliot:traceback", "eliot:destination_failure"})

#: Fields every console line already shows (or that only matter in files).
_CONSOLE_HIDDEN = frozenset(
    {"timestamp", "task_uuid", "task_level", "action_type", "action_status", "message_type", "log_level"}
)

_CONSOLE_VALUE_LIMIT = 300

#: Actions that happen once per chat message: at info and below they are
#: written to combined.log (eliot-tree) but not to the console (journald),
#: where a line per message would cost more than the message itself.
FILE_ONLY_ACTIONS = frozenset({"openclaw:message", "openclaw:message:replayed", "openclaw:outbox:deliver"})
_QUIET_LEVELS = frozenset({"info", "debug", "trace"})
#: Records at these levels are written at once (with what is buffered before them).
_AT_ONCE_LEVELS = frozenset({"warn", "error"})

_TO_TWISTED = {
    "error": LogLevel.error,
    "warn": LogLevel.warn,
    "info": LogLevel.info,
    "debug": LogLevel.debug,
    "trace": LogLevel.debug,
}

_FROM_TWISTED = {
    LogLevel.critical: "error",
    LogLevel.error: "error",
    LogLevel.warn: "warn",
    LogLevel.info: "info",
    LogLevel.debug: "debug",
}


# Twisted logs these for every connection a factory makes or serves (each
# TCP probe, each HTTP client request): at info they drown the console.
_CHATTY_FORMATS = ("Starting factory {factory!r}", "Stopping factory {factory!r}")


def twisted_level(event: dict[str, Any]) -> str:
    """Our level for a twisted.logger event; per-connection factory chatter is debug."""
    if event.get("log_format") in _CHATTY_FORMATS:
        return "debug"
    return _FROM_TWISTED.get(event.get("log_level"), "info")


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a field called ``name`` holds credentials (see SECRET_KEY_PARTS)."""
    lowered = name.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def encoded_forms(secret: str) -> set[str]:
    """
    ``secret`` as it may appear in text: itself, base64 (standard and
    URL-safe, with and without the padding),
    URL-encoded (``%XX`` and ``+`` for spaces) and JSON-escaped (as orjson
    and as ``json.dumps`` with ASCII escapes write it).  Forms shorter than
    ``MIN_SECRET_LENGTH`` are left out, as short secrets are.  A login's
    SASL PLAIN forms are secrets of their own (``config.sasl_forms``).
    """
    raw = secret.encode("utf-8", "surrogatepass")
    padded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    forms = {
        secret,
        *padded,
        *(form.rstrip("=") for form in padded),
        quote(raw, safe=""),
        quote_plus(raw, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],  # what orjson writes, surrogates aside
    }
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def known_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    """
    Every form (``encoded_forms``) of the secrets long enough to scrub from
    text, longest first.  Cached per secret set, so a logger asking per
    record pays for the encodings once.
    """
    return _known(tuple(secrets))


@functools.lru_cache(maxsize=8)
def _known(secrets: tuple[str, ...]) -> tuple[str, ...]:
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH:
            forms |= encoded_forms(secret)
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


@functools.lru_cache(maxsize=8)
def _finder(known: tuple[str, ...]) -> Callable[[bytes], Any]:
    """
    A search for any known form as it appears inside an orjson line
    (escaped): one compiled alternation, cheaper than a scan per form once
    each secret has half a dozen forms.
    """
    if not known:
        return lambda line: None
    return re.compile(b"|".join(re.escape(orjson.dumps(form)[1:-1]) for form in known)).search


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """
    ``text`` from outside (an SMTP reply, an HTTP error body, an exception's
    message) with every form of every secret replaced: what may then go into
    ``/health``, an error, or the store.
    """
    return _scrub(text, known_secrets(secrets))


_SECRET_KEY_BYTES = tuple(part.encode() for part in SECRET_KEY_PARTS)


def _has_secret_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(is_secret_key(str(key)) or _has_secret_key(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_secret_key(item) for item in value)
    return False


def serialize_redacted(message: dict[str, Any], known: tuple[str, ...]) -> tuple[dict[str, Any], bytes]:
    """
    ``message`` made safe (``redact``) and as one JSON line.  Most records
    hold no secret: they are serialized once and checked, and only those
    that need it pay for the full ``redact`` walk.
    """
    line = _dumps(message)
    lowered = line.lower()
    # Keys are in the line too, so a line naming no secret-looking word has no
    # secret key; inside JSON a secret appears escaped (quotes, backslashes).
    maybe_key = any(part in lowered for part in _SECRET_KEY_BYTES)
    if (maybe_key and _has_secret_key(message)) or _finder(known)(line):
        message = _redact(message, known, False)
        line = _dumps(message)
    return message, line


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # what orjson cannot encode (integers past 64 bits): the slow path
        return (json.dumps(value, ensure_ascii=False, default=str) + "\n").encode("utf-8", "backslashreplace")


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """
    Return a JSON-ready copy of ``value`` that is safe to write to a log.

    The rule: (a) under a dict key for which ``is_secret_key`` is true, every
    string at any depth becomes ``<redacted>`` while numbers, booleans and
    None are kept (so ``max_tokens: 4096`` survives and ``authorization:
    ["Bearer …"]`` does not); (b) every occurrence of every secret of at least
    ``MIN_SECRET_LENGTH`` characters inside any string or key is replaced by
    ``<redacted>`` (overlapping occurrences become one marker).  Tuples and
    sets become lists, bytes are decoded, and any other object is rendered
    with ``str()`` first, so a secret inside a repr is caught too.
    """
    return _redact(value, known_secrets(secrets), False)


def _redact(value: Any, known: tuple[str, ...], hide: bool) -> Any:
    if isinstance(value, str):
        return REDACTED if hide else _scrub(value, known)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {
            _scrub(str(key), known): _redact(item, known, hide or is_secret_key(str(key)))
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, known, hide) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return _redact(bytes(value).decode("utf-8", "backslashreplace"), known, hide)
    return _redact(str(value), known, hide)


def _scrub(text: str, known: tuple[str, ...]) -> str:
    """Replace every (possibly overlapping) occurrence of a known secret."""
    spans = []
    for secret in known:
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    if not spans:
        return text
    spans.sort()
    pieces = []
    position = 0
    begin, end = spans[0]
    for next_begin, next_end in spans[1:]:
        if next_begin <= end:
            end = max(end, next_end)
            continue
        pieces += [text[position:begin], REDACTED]
        position, (begin, end) = end, (next_begin, next_end)
    pieces += [text[position:begin], REDACTED, text[end:]]
    return "".join(pieces)


def level_of(message: dict[str, Any]) -> str:
    """
    The level a message is filtered and written at.

    A failed action's end message, and Eliot's own traceback and
    destination-failure messages, are ``error`` (they carry no level); any
    other message without a known ``log_level`` counts as ``info``.
    """
    if message.get("action_status") == "failed" or message.get("message_type") in _ELIOT_ERROR_TYPES:
        return "error"
    level = message.get("log_level")
    return level if isinstance(level, str) and level in LEVELS else "info"


def render(message: dict[str, Any], level: str) -> str:
    """One readable console line: level, type, status, then ``key=value``s."""
    parts = [f"{level:<5}", str(message.get("action_type") or message.get("message_type") or "-")]
    if message.get("action_status"):
        parts.append(str(message["action_status"]))
    for key, value in message.items():
        if key in _CONSOLE_HIDDEN:
            continue
        shown = value if isinstance(value, str) and value and not any(c.isspace() for c in value) else None
        if shown is None:
            shown = json.dumps(value, ensure_ascii=False, default=str)
        if level != "error" and len(shown) > _CONSOLE_VALUE_LIMIT:
            shown = shown[:_CONSOLE_VALUE_LIMIT] + "…"
        parts.append(f"{key}={shown}")
    return " ".join(parts)


#: Info and lower records wait this long at most before they are written
#: (warn and error are written at once), so a burst costs one write.
FLUSH_INTERVAL = 0.2

#: Buffered bytes per file that are written at once, whatever the timer says:
#: the bound on the buffer's memory.
MAX_BUFFERED_BYTES = 64 * 1024


class _JsonLinesFile:
    """
    A size-rotated file of one JSON object per line.  Lines are buffered
    until ``flush`` (or ``MAX_BUFFERED_BYTES``) and then written in as few
    writes as rotation allows: a file ends where it would have ended had
    every line been written on its own.
    """

    def __init__(self, directory: str, name: str, max_bytes: int, backups: int) -> None:
        # LogFile opens unbuffered, rotates before a write once the file has
        # reached rotateLength, and deletes rotated files past maxRotatedFiles.
        self._file = LogFile(name, directory, rotateLength=max_bytes, defaultMode=0o600, maxRotatedFiles=backups)
        # Eliot calls destinations from whichever thread logged.  Signal
        # handlers never log (they only schedule work on the reactor), so no
        # signal can interrupt a write and then wait here for itself.
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, line: bytes, now: bool = True) -> bool:
        """
        Append one serialized JSON line (ending in a newline), at once with
        ``now``; whether lines are left waiting for ``flush``.
        """
        with self._lock:
            self._pending.append(line)
            self._pending_bytes += len(line)
            if now or self._pending_bytes >= MAX_BUFFERED_BYTES:
                self._write_pending()
            return bool(self._pending)

    def flush(self) -> None:
        """Write every buffered line."""
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        lines, self._pending, self._pending_bytes = self._pending, [], 0
        file, limit = self._file, self._file.rotateLength
        size, chunk = file.size, []
        for line in lines:
            if size >= limit:
                # An unbuffered writer rotates before this line: end the chunk
                # here, so the next write starts the new file with it.
                if chunk:
                    file.write(b"".join(chunk))
                    chunk = []
                size = 0
            chunk.append(line)
            size += len(line)
        if chunk:
            file.write(b"".join(chunk))

    def resize(self, max_bytes: int, backups: int) -> None:
        """New rotation limits (a reload), from the next write on."""
        with self._lock:
            self._write_pending()
            self._file.rotateLength = max_bytes
            self._file.maxRotatedFiles = backups

    def close(self) -> None:
        with self._lock:
            self._write_pending()
            self._file.flush()
            self._file.close()


@implementer(IReconfigurable)
class LoggingService(Service):
    """
    Eliot destinations (combined.log, error.log, console) plus the
    twisted.logger -> Eliot bridge, added on start and removed on stop.

    ``secrets`` is called for every written message, so a token rotated at
    runtime is redacted from the next line on.

    Info and lower records logged on the reactor thread are buffered and
    written together ``flush_interval`` later (or past ``MAX_BUFFERED_BYTES``);
    warn and error records, and records from other threads, are written at
    once with whatever is buffered before them.  Nothing buffered is lost on
    a clean exit: stopping (the last step of every drain, SIGTERM's too), a
    reload and interpreter exit (``atexit``, for an exit on an error) all
    write the buffer out.
    """

    name = "logging"

    def __init__(
        self,
        home: str,
        level: str,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        secrets: Callable[[], Iterable[str]] = lambda: (),
        console: bool = True,
        banner: dict[str, Any] | None = None,
        clock: Any = None,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"log.level: unknown level {level!r} (choose one of {', '.join(LEVELS)})")
        if max_bytes < 1:
            raise ValueError(f"log.max_bytes: must be at least 1, not {max_bytes}")
        if backups < 1:
            # LogFile always keeps the file it just rotated as .1.
            raise ValueError(f"log.backups: must be at least 1, not {backups}")
        self.directory = os.path.join(home, "logs")
        self.level = level
        self._max_bytes = max_bytes
        self._backups = backups
        self._secrets = secrets
        self._console = console
        #: Logged first, so a log's opening lines say which config is in use.
        self._banner = banner
        self._combined: _JsonLinesFile | None = None
        self._errors: _JsonLinesFile | None = None
        self._clock = clock
        self._flush_interval = flush_interval
        self._flush_call: Any = None
        # When recent errors were written, for the heartbeat's snapshot.
        self._error_times: collections.deque[float] = collections.deque(maxlen=10_000)
        #: The last warnings and errors as written (redacted), numbered, for the console's Logs page.
        self.seq = 0
        self._recent: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=RECENT_RECORDS)

    def startService(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        set_threshold(self.level)
        self._combined = _JsonLinesFile(self.directory, "combined.log", self._max_bytes, self._backups)
        self._errors = _JsonLinesFile(self.directory, "error.log", self._max_bytes, self._backups)
        if self._clock is None:
            from twisted.internet import reactor as clock
            self._clock = clock
        atexit.register(self.flush)
        add_destinations(self._deliver)
        globalLogPublisher.addObserver(self._bridge)
        super().startService()
        self._log_banner()

    def privilegedStartService(self) -> None:
        # First of all children: Eliot holds messages until a destination is
        # added, so this opens the log even though ports bind before startService.
        super().privilegedStartService()
        self._log_banner()

    def _log_banner(self) -> None:
        if self._banner is not None:
            log("openclaw:daemon:starting", **self._banner)
            self._banner = None

    def reconfigure(self, config: Any) -> None:
        """A reload's ``log`` section: the level and flush interval at once, rotation from the next write."""
        if config.log.level != self.level:
            self.level = config.log.level
            set_threshold(self.level)
        self._max_bytes, self._backups = config.log.max_bytes, config.log.backups
        self._flush_interval = config.log.flush_interval
        self.flush()
        for file in (self._combined, self._errors):
            if file is not None:
                file.resize(self._max_bytes, self._backups)

    def stopService(self) -> Any:
        if self._combined is not None and self._errors is not None:
            globalLogPublisher.removeObserver(self._bridge)
            remove_destination(self._deliver)
            atexit.unregister(self.flush)
            self._cancel_flush()
            self._combined.close()
            self._errors.close()
            self._combined = self._errors = None
        return super().stopService()

    def _deliver(self, message: dict[str, Any]) -> None:
        """The Eliot destination: filter, redact once, fan out."""
        level = level_of(message)
        if LEVELS[level] < LEVELS[self.level] or self._combined is None or self._errors is None:
            return  # below the threshold, or a message racing stopService
        raw = {k: v for k, v in message.items() if k != "__eliot_logger__"}
        raw["log_level"] = level
        clean, line = serialize_redacted(raw, known_secrets(self._secrets()))
        # Off the reactor thread no timer can be set: such records go at once.
        now = level in _AT_ONCE_LEVELS or not self._flush_interval or not isInIOThread()
        if self._combined.write(line, now):
            self._schedule_flush()
        if level == "error":
            self._errors.write(line)
            self._error_times.append(clean.get("timestamp", time.time()))
        if LEVELS[level] >= LEVELS["warn"]:
            self.seq += 1
            self._recent.append((self.seq, clean))
        # Twisted's own observers already show the original of a twisted:log;
        # per-message records at info and below go to the files only.
        if self._console and clean.get("message_type") != "twisted:log" and not (
            level in _QUIET_LEVELS and clean.get("action_type") in FILE_ONLY_ACTIONS
        ):
            globalLogPublisher(
                {
                    "log_format": "{openclaw_line}",
                    "openclaw_line": render(clean, level),
                    "log_level": _TO_TWISTED[level],
                    "log_namespace": "openclaw",
                    "log_source": None,
                    "log_time": clean.get("timestamp", time.time()),
                    CONSOLE_MARKER: True,
                }
            )

    def recent(self) -> list[tuple[int, dict[str, Any]]]:
        """The last ``RECENT_RECORDS`` warnings and errors, oldest first, with their sequence numbers."""
        return list(self._recent)

    def flush(self) -> None:
        """Write every buffered record now."""
        self._cancel_flush()
        for file in (self._combined, self._errors):
            if file is not None:
                file.flush()

    def _schedule_flush(self) -> None:
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_interval, self._flush_due)

    def _flush_due(self) -> None:
        self._flush_call = None
        self.flush()

    def _cancel_flush(self) -> None:
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()

    def recent_errors(self, within: float = 3600.0) -> int:
        """Error records written in the last ``within`` seconds."""
        since = time.time() - within
        while self._error_times and self._error_times[0] < since:
            self._error_times.popleft()
        return len(self._error_times)

    def _bridge(self, event: dict[str, Any]) -> None:
        """twisted.logger observer: re-log Twisted's events as ``twisted:log``."""
        if event.get(CONSOLE_MARKER):
            return
        level = twisted_level(event)
        if not enabled(level):
            return
        fields: dict[str, Any] = {
            "message": formatEvent(event),
            "log_namespace": event.get("log_namespace", "-"),
        }
        failure = event.get("log_failure")
        if failure is not None:
            fields["exception"] = f"{failure.type.__module__}.{failure.type.__qualname__}"
            fields["traceback"] = failure.getTraceback()
        log("twisted:log", level, **fields)
