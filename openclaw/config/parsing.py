"""
The value parsers every config section shares: durations, sizes, counts,
strings, booleans, and a mapping of known fields.  Each raises ``ValueError``
with a short "expected ..., got ..." the config layer prefixes with the key.

Every number has a range: the plain parsers refuse what no setting could
mean (a 400-digit integer, a nanosecond, a zettabyte), and ``duration``,
``size`` and ``whole`` build the per-key parsers whose ranges
``docs/configuration.md`` lists.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

Parser = Callable[[Any], Any]


def got(value: Any) -> str:
    """A value as it reads in an error message (cut short: the message stays one readable line)."""
    try:
        shown = json.dumps(value, default=str)
    except (ValueError, RecursionError):  # huge integers, deep nesting
        shown = type(value).__name__
    return shown if len(shown) <= 60 else shown[:57] + "..."


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

#: No duration openclaw waits for is longer (ten years) or, unless 0, shorter (a millisecond).
MAX_DURATION = 10 * 365 * 86400.0
MIN_DURATION = 0.001
#: No size or count openclaw takes is larger.
MAX_SIZE = 2**40
MAX_COUNT = 10**9


def parse_duration(value: Any) -> float:
    """
    Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d`` or a bare
    non-negative number of seconds.
    """
    seconds = _seconds(value)
    if seconds is None or not (seconds == 0 or MIN_DURATION <= seconds <= MAX_DURATION):
        raise ValueError(f"expected a duration like 30s (at most 10 years), got {got(value)}")
    return seconds


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if 0 <= value <= MAX_DURATION else None  # before float(): no OverflowError
    if isinstance(value, float):
        return value if 0 <= value <= MAX_DURATION else None  # NaN and inf fail both tests
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return _seconds(float(text))
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return _seconds(sum(float(n) * DURATION_UNITS[u] for n, u in parts))
    return None


def format_duration(seconds: float) -> str:
    """The largest whole unit: ``30d``, ``24h``, ``5m``, ``30s``, ``0.5s``."""
    for unit in ("d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "KiB": 2**10,
    "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30,
}


def parse_size(value: Any) -> int:
    """Bytes from ``1MiB``, ``512KiB``, ``10MB`` or a bare integer (at most 1 TiB)."""
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and len(value) <= 64:
        match = _SIZE.fullmatch(value.strip())
        if match:
            size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size is None or not 0 <= size <= MAX_SIZE:
        raise ValueError(f"expected a size like 1MiB (at most 1TiB), got {got(value)}")
    return size


def _whole(value: Any) -> int | None:
    if isinstance(value, str) and len(value) <= 20 and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None


def count(value: Any) -> int:
    """A whole number >= 0 (also from the text an environment variable holds)."""
    number = _whole(value)
    if number is None:
        raise ValueError(f"expected a whole number from 0 to {MAX_COUNT:,}, got {got(value)}")
    return number


def positive(value: Any) -> int:
    """A whole number >= 1."""
    number = _whole(value)
    if number is None or number < 1:
        raise ValueError(f"expected a whole number from 1 to {MAX_COUNT:,}, got {got(value)}")
    return number


def duration(low: float, high: float, off: bool = False) -> Parser:
    """
    A parser of durations from ``low`` to ``high`` seconds; with ``off``,
    0 is accepted too (it turns the setting off).
    """
    span = f"from {format_duration(low)} to {format_duration(high)}" + (", or 0 (off)" if off else "")

    def parse(value: Any) -> float:
        seconds = _seconds(value)
        if seconds is None or not (low <= seconds <= high or (off and seconds == 0)):
            raise ValueError(f"expected a duration {span}, got {got(value)}")
        return seconds

    return _ranged(parse, "duration", span)


def size(low: int, high: int) -> Parser:
    """A parser of sizes in bytes from ``low`` to ``high``."""
    span = f"from {format_size(low)} to {format_size(high)}"

    def parse(value: Any) -> int:
        try:
            number = parse_size(value)
        except ValueError:
            number = -1
        if not low <= number <= high:
            raise ValueError(f"expected a size {span}, got {got(value)}")
        return number

    return _ranged(parse, "size", span)


def whole(low: int, high: int) -> Parser:
    """A parser of whole numbers from ``low`` to ``high``."""
    span = f"from {low:,} to {high:,}"

    def parse(value: Any) -> int:
        number = _whole(value)
        if number is None or not low <= number <= high:
            raise ValueError(f"expected a whole number {span}, got {got(value)}")
        return number

    return _ranged(parse, "whole", span)


def _ranged(parse: Parser, kind: str, span: str) -> Parser:
    parse.kind, parse.span = kind, span  # type: ignore[attr-defined]
    return parse


def format_size(size: int) -> str:
    """``1MiB``, ``64KiB``, ``1GiB``, else bytes."""
    for unit in ("GiB", "MiB", "KiB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


def string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {got(value)}")


def text(value: Any) -> str:
    """A string; a number is taken as its text (ids such as ``12345`` in YAML)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected a string, got {got(value)}")


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def boolean(value: Any) -> bool:
    """``true``/``false`` (also yes/no, on/off, 1/0 from the environment)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {got(value)}")


def json_text(value: Any, what: str) -> Any:
    """A value given as JSON text (from the environment) decoded; others as they are."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else None
    except ValueError:
        raise ValueError(f"expected a JSON {what}, got {got(value)}") from None


def fields(raw: Any, known: Iterable[str], parsers: dict[str, Parser], default: Parser = text) -> dict[str, Any]:
    """
    Parse a mapping whose keys must be among ``known``, each value by its
    parser in ``parsers`` (else ``default``); errors start with the key.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping, got {got(raw)}")
    names = set(known)
    parsed = {}
    for key, value in raw.items():
        if key not in names:
            raise ValueError(f"unknown key {key!r} (known: {', '.join(sorted(names))})")
        try:
            parsed[key] = parsers.get(key, default)(value)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    return parsed


_ORIGIN = re.compile(r"https?://[a-z0-9.\-\[\]:]+")


_WS_URL = re.compile(r"wss?://[A-Za-z0-9.\-\[\]:]+(/[\x21-\x7e]*)?")


def ws_url(value: Any) -> str:
    """A WebSocket URL (``wss://console.example/gateway``), or empty."""
    if value == "" or (isinstance(value, str) and _WS_URL.fullmatch(value)):
        return value
    raise ValueError(f"expected ws://host:port/path or wss://..., got {got(value)}")


def origins(value: Any) -> tuple[str, ...]:
    """
    Browser origins (``https://console.example:8443``), lowercase, no path;
    a list, or from the environment a comma-separated string.
    """
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        found = tuple(v.lower().rstrip("/") for v in value)
        if all(_ORIGIN.fullmatch(v) for v in found):
            return found
    raise ValueError(f"expected a list of origins like https://host:port, got {got(value)}")
