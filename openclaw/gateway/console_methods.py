"""
Gateway methods for the web console: ``console.link`` (a one-time link for
``openclaw console``), ``console.subscribe`` (the live ``console.status``
feed) and ``logs.recent`` (the last warnings and errors, filtered).
"""

from __future__ import annotations

from typing import Any, Callable

from openclaw import health
from openclaw.console.feed import ConsoleFeed
from openclaw.console.links import LinkCodes
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError

#: ``logs.recent`` answers at most this many records; a field's text is cut to this many characters.
MAX_RECORDS, MAX_FIELD = 200, 2000
#: Eliot's own fields, shown as the record's time, level and type instead.
_ELIOT_FIELDS = {"timestamp", "task_uuid", "task_level", "message_type", "action_type", "log_level"}


def component(message: dict[str, Any]) -> str:
    """``gateway`` for ``openclaw:gateway:unauthorized``, ``twisted`` for ``twisted:log``."""
    parts = str(message.get("message_type") or message.get("action_type") or "-").split(":")
    return parts[1] if parts[0] == "openclaw" and len(parts) > 2 else parts[0]


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "\u2026"
    return value


def record_json(seq: int, message: dict[str, Any]) -> dict[str, Any]:
    """One log record as the Logs page shows it (already redacted when it was written)."""
    return {
        "seq": seq, "timestamp": message.get("timestamp"), "level": message.get("log_level"),
        "type": message.get("message_type") or message.get("action_type"), "component": component(message),
        "fields": {k: _clip(v) for k, v in message.items() if k not in _ELIOT_FIELDS},
    }


def console_methods(codes: LinkCodes, feed: ConsoleFeed, logging: Any,
                    link_url: Callable[[str], str | None]) -> dict[str, Callable[[Any, dict], Any]]:
    """:param link_url: the console URL carrying a code (None while the web listener is not bound)."""

    def link(conn: Any, params: dict) -> dict:
        code, expires = codes.issue()
        url = link_url(code)
        if url is None:
            raise FrameError(frames.INVALID_FIELD, "the console is off (web.console) or web.listen is not a TCP port")
        return {"url": url, "expires": health.iso(expires), "expires_in": codes.ttl}

    def recent(conn: Any, params: dict) -> dict:
        level = params.get("level", "warn")
        if level not in ("warn", "error"):
            raise FrameError(frames.INVALID_FIELD, "field 'level' must be warn or error")
        wanted = params.get("component")
        if wanted is not None and not (isinstance(wanted, str) and len(wanted) <= 64):
            raise FrameError(frames.INVALID_FIELD, "field 'component' must be a component's name")
        limit = params.get("limit", MAX_RECORDS)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_RECORDS:
            raise FrameError(frames.INVALID_FIELD, f"field 'limit' must be a whole number from 1 to {MAX_RECORDS}")
        records = logging.recent()
        kept = [(seq, m) for seq, m in records
                if (level == "warn" or m.get("log_level") == "error") and (wanted is None or component(m) == wanted)]
        return {"records": [record_json(seq, m) for seq, m in kept[-limit:]],
                "components": sorted({component(m) for _, m in records}), "seq": logging.seq}

    return {"console.link": link, "console.subscribe": lambda conn, params: feed.subscribe(conn), "logs.recent": recent}
