"""
The value parsers every config section shares: durations, sizes, counts,
strings, booleans, and a mapping of known fields.  Each raises ``ValueError``
with a short "expected ..., got ..." the config layer prefixes with the key.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

Parser = Callable[[Any], Any]


def got(value: Any) -> str:
    """A value as it reads in an error message."""
    return json.dumps(value, default=str)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """
    Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d`` or a bare
    non-negative number of seconds.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, got {got(value)}")
    if isinstance(value, (int, float)):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"expected a duration like 30s, got {got(value)}")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * DURATION_UNITS[u] for n, u in parts)
    raise ValueError(f"expected a duration like 30s, got {got(value)}")


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
    """Bytes from ``1MiB``, ``512KiB``, ``10MB`` or a bare integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    raise ValueError(f"expected a size like 1MiB, got {got(value)}")


def count(value: Any) -> int:
    """A whole number >= 0 (also from the text an environment variable holds)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"expected a whole number >= 0, got {got(value)}")


def positive(value: Any) -> int:
    """A whole number >= 1."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError(f"expected a positive whole number, got {got(value)}")


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


def within(parser: Parser, low: float, high: float, shown: str) -> Parser:
    """``parser``, then a range check: ``low <= value <= high`` (``shown`` is the range as the docs write it)."""

    def parse(value: Any) -> Any:
        parsed = parser(value)
        if not low <= parsed <= high:
            raise ValueError(f"expected {shown}, got {got(value)}")
        return parsed

    parse.__doc__ = f"{parser.__doc__ or ''} Range: {shown}."
    parse.inner = parser  # type: ignore[attr-defined]
    return parse


_ORIGIN = re.compile(r"https?://[a-z0-9.\-\[\]:]+")


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
