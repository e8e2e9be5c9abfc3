"""
Config of the proactive engine: the heartbeat's extra keys and the three
list sections ``checks:``, ``cron:`` and ``mail:``.  Parsed into frozen
dataclasses; every error names the entry (``checks[2].every``) and why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any, Callable

from openclaw.config.parsing import (
    boolean,
    duration,
    got,
    json_text,
    parse_duration,
    text,
    whole,
)
from openclaw.config.parsing import fields as fields_of

CHECK_TYPES = ("http", "tcp", "dns", "disk", "memory", "load", "cpu", "process", "logfile")
CRON_ACTIONS = ("report", "message", "heartbeat", "backup")




def _optional_duration(value: Any) -> float:
    return 0.0 if value in (None, "", 0, "0") else parse_duration(value)



def _name(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
        return value
    raise ValueError(f"expected a name of letters, digits, '_', '.', '-', got {got(value)}")




def _percent(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    raise ValueError(f"expected a percentage from 0 to 100, got {got(value)}")



def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {got(value)}")


def parse_timezone(value: Any) -> str:
    """An IANA zone name (``Europe/Berlin``); empty means the host's local zone."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
            return value
        except Exception:
            pass
    raise ValueError(f"expected an IANA time zone like Europe/Berlin, got {got(value)}")


def _clock_time(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d|24:00", value):
        return value
    raise ValueError(f"expected a time of day like 08:00, got {got(value)}")


@dataclass(frozen=True)
class ActiveHours:
    """Local times between which beats run; ``start > end`` spans midnight."""

    start: str = "00:00"
    end: str = "24:00"


def parse_active_hours(value: Any) -> ActiveHours | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"expected {{start, end}}, got {got(value)}") from None
    if not isinstance(value, dict) or set(value) - {"start", "end"}:
        raise ValueError(f"expected a mapping {{start: \"08:00\", end: \"23:00\"}}, got {got(value)}")
    try:
        return ActiveHours(start=_clock_time(value.get("start", "00:00")), end=_clock_time(value.get("end", "24:00")))
    except ValueError as e:
        raise ValueError(f"active_hours: {e}") from None


def parse_target(value: Any) -> str:
    """``last`` (the owner's last active session) or a session id like ``telegram:123``."""
    if value == "last" or (isinstance(value, str) and re.fullmatch(r"[a-z]+:\S+", value)):
        return value
    raise ValueError(f"expected last or a session id like telegram:12345, got {got(value)}")


@dataclass(frozen=True)
class CheckConfig:
    name: str
    type: str
    target: str = ""
    every: float = 60.0
    timeout: float = 5.0
    fail_after: int = 3
    latency_max: float = 0.0
    expect_status: int = 0
    body_match: str = ""
    cert_days_min: int = 14
    min_free_percent: float = 10.0
    max_percent: float = 90.0
    pattern: str = ""
    realert_every: float = 0.0
    flap_window: float = 0.0


@dataclass(frozen=True)
class CronConfig:
    name: str
    schedule: str
    action: str
    timezone: str = ""
    text: str = ""
    instruction: str = ""
    target: str = ""
    grace: float = 3600.0
    #: backup jobs: how many backups to keep in ``to`` (default ``<home>/backups``).
    keep: int = 7
    to: str = ""


@dataclass(frozen=True)
class MailConfig:
    name: str
    host: str
    user: str
    port: int = 993
    tls: str = "tls"
    ca_file: str = ""
    password: str = ""
    password_env: str = ""
    mailbox: str = "INBOX"
    vip: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    poll_every: float = 300.0
    idle: bool = True
    target: str = ""


def _tls(value: Any) -> str:
    if value in ("tls", "starttls", "none"):
        return value
    raise ValueError(f"expected tls, starttls or none, got {got(value)}")


def _regex(value: Any) -> str:
    pattern = text(value)
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"not a valid regular expression ({e})") from None
    return pattern


def _schedule(value: Any) -> str:
    from croniter import croniter

    if isinstance(value, str) and croniter.is_valid(value):
        return value
    raise ValueError(f"expected a cron expression like \"0 9 * * *\", got {got(value)}")


def _check_type(value: Any) -> str:
    if value in CHECK_TYPES:
        return value
    raise ValueError(f"expected one of {', '.join(CHECK_TYPES)}, got {got(value)}")


def _action(value: Any) -> str:
    if value in CRON_ACTIONS:
        return value
    raise ValueError(f"expected one of {', '.join(CRON_ACTIONS)}, got {got(value)}")


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": _name, "type": _check_type, "every": duration(0.05, 30 * 86400), "timeout": duration(0.01, 600),
    "fail_after": whole(1, 1000), "latency_max": _optional_duration, "expect_status": whole(0, 599),
    "cert_days_min": whole(0, 3650),
    "min_free_percent": _percent, "max_percent": _percent, "pattern": _regex, "body_match": _regex,
    "realert_every": _optional_duration, "flap_window": _optional_duration,
    "schedule": _schedule, "action": _action, "timezone": parse_timezone, "grace": duration(0, 7 * 86400),
    "target": text, "port": whole(1, 65535), "tls": _tls, "vip": _strings, "keywords": _strings,
    "poll_every": duration(0.05, 86400), "idle": boolean,
}


def _session_target(value: Any) -> str:
    """Where a job or mailbox tells the owner: empty (``heartbeat.target``), ``last`` or a session id."""
    return "" if value == "" else parse_target(value)


def _entries(
    cls: type, required: tuple[str, ...], check: Callable[[Any], None],
    parsers: dict[str, Callable[[Any], Any]] | None = None,
) -> Callable[[Any], tuple]:
    known = {f.name for f in fields(cls)}
    parsers = {**_PARSERS, **(parsers or {})}

    def parse(value: Any) -> tuple:
        value = json_text(value, "list")
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {got(value)}")
        entries, names = [], set()
        for n, raw in enumerate(value):
            if not isinstance(raw, dict):
                raise ValueError(f"[{n}]: expected a mapping, got {got(raw)}")
            for key in required:
                if key not in raw:
                    raise ValueError(f"[{n}].{key}: missing")
            try:
                parsed = fields_of(raw, known, parsers)
            except ValueError as e:
                joiner = ": " if str(e).startswith("unknown key") else "."
                raise ValueError(f"[{n}]{joiner}{e}") from None
            entry = cls(**parsed)
            if entry.name in names:
                raise ValueError(f"[{n}].name: {entry.name!r} is used twice")
            names.add(entry.name)
            try:
                check(entry)
            except ValueError as e:
                raise ValueError(f"[{n}].{e}") from None
            entries.append(entry)
        return tuple(entries)

    return parse


def _check_entry(check: CheckConfig) -> None:
    needs_target = {"http", "tcp", "dns", "disk", "process", "logfile"}
    if check.type in needs_target and not check.target:
        raise ValueError(f"target: a {check.type} check needs a target")
    if check.type == "http" and not re.match(r"https?://\S+$", check.target):
        raise ValueError(f"target: expected an http(s) URL, got {got(check.target)}")
    if check.type == "tcp" and not re.fullmatch(r"\S+:\d{1,5}", check.target):
        raise ValueError(f"target: expected host:port, got {got(check.target)}")
    if check.type == "logfile" and not check.pattern:
        raise ValueError("pattern: a logfile check needs a pattern")
    if check.every <= 0:
        raise ValueError("every: must be more than 0")


def _directory(value: Any) -> str:
    if value == "" or (isinstance(value, str) and value.startswith("/")):
        return value
    raise ValueError(f"expected an absolute directory path, got {got(value)}")


def _cron_entry(job: CronConfig) -> None:
    if job.action == "message" and not job.text:
        raise ValueError("text: a message job needs a text")


def _mail_entry(mail: MailConfig) -> None:
    if not mail.password and not mail.password_env:
        raise ValueError("password_env: name the variable that holds the password")
    if mail.tls == "none" and mail.host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("tls: none (a password in clear text) is only allowed to 127.0.0.1 or localhost")


parse_checks = _entries(CheckConfig, ("name", "type"), _check_entry)
parse_cron = _entries(CronConfig, ("name", "schedule", "action"), _cron_entry,
                      {"target": _session_target, "keep": whole(1, 1000), "to": _directory})
parse_mail = _entries(MailConfig, ("name", "host", "user"), _mail_entry, {"target": _session_target})

DEFAULT_CRON = (CronConfig(name="morning-report", schedule="0 9 * * *", action="report"),)
