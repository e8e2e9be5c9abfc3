"""
The commented example config (``etc/openclaw.example.yaml`` and what
``openclaw init`` writes), rendered from the key table so it cannot drift.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any

from openclaw.config.parsing import format_duration, parse_duration, parse_size
from openclaw.config.sections import KEYS, LIST_SECTIONS, PARSERS, Config, env_name


def render_example() -> str:
    """
    The commented example config (``etc/openclaw.example.yaml`` and what
    ``openclaw init`` writes), rendered from the key table so it cannot drift.
    """
    lines = [
        "# openclaw configuration. Every key is optional; the values shown are the",
        "# defaults. Each key can also be set by an environment variable, shown",
        "# after it, which wins over this file; twistd options win over both.",
        "# Keep this file 0600 if it holds a token.",
    ]
    for section_field in fields(Config):
        section = section_field.name
        lines.append("")
        if section in LIST_SECTIONS:
            lines.append(f"# {LIST_SECTIONS[section][1]} [OPENCLAW_{section.upper()} as JSON]")
            lines.append(f"# {section}: {json.dumps([_plain(e) for e in section_field.default])}")
            continue
        lines.append(f"{section}:")
        for key_field in fields(section_field.default):
            key = key_field.name
            default = key_field.default
            lines.append(f"  # {KEYS[section, key][1]} [{env_name(section, key)}]")
            lines.append(f"  # {key}: {_yaml_scalar(section, key, default)}")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """A dataclass entry as the mapping a YAML file would hold (defaults left out)."""
    defaults = {f.name: f.default for f in fields(value)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items() if v != defaults[k]}


def _yaml_scalar(section: str, key: str, value: Any) -> str:
    parser = getattr(PARSERS[section, key], "inner", PARSERS[section, key])  # within(...) wraps a parser
    if section == "connectors":
        return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items()})
    if parser is parse_duration:
        return format_duration(value)
    if parser is parse_size and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)}MiB"
    if parser is parse_size and value and value % 1024 == 0:
        return f"{value // 1024}KiB"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)
