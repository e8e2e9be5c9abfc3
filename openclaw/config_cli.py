"""
``openclaw config check`` and ``openclaw config show``: validate the file
the daemon would read, without starting anything, and print the effective
configuration with each value's source and every secret masked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from typing import Any

from openclaw.config import (
    EX_CONFIG,
    KEYS,
    LIST_SECTIONS,
    Config,
    ConfigError,
    config_path,
    default_home,
    load_config,
    value_sources,
)
from openclaw.config.connectors import SECRET_FIELDS

# Field names whose values are secrets wherever they appear (connectors,
# providers, mailboxes, the gateway token).
SECRET_NAMES = frozenset({*SECRET_FIELDS, "api_key"})
MASK = "********"


def masked(value: Any) -> Any:
    """``value`` as plain data, each non-empty secret field replaced by ``MASK``."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: (MASK if v else "") if k in SECRET_NAMES and isinstance(v, str) else masked(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    return value


def effective(config: Config, sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{"section.key": {"value", "source"}}`` for every key and list section."""
    shown: dict[str, dict[str, Any]] = {}
    for section, key in KEYS:
        value = getattr(getattr(config, section), key)
        if key in SECRET_NAMES and isinstance(value, str):
            value = MASK if value else ""
        shown[f"{section}.{key}"] = {"value": masked(value), "source": sources.get(f"{section}.{key}", "default")}
    for section in LIST_SECTIONS:
        shown[section] = {"value": masked(getattr(config, section)), "source": sources.get(section, "default")}
    return shown


def _home(args: argparse.Namespace) -> str:
    return os.path.abspath(os.path.expanduser(args.home or default_home()))


def cmd_config(args: argparse.Namespace) -> int:
    path = config_path(args.file or args.config, _home(args))
    overrides = {"gateway.listen": args.gateway, "web.listen": args.web, "log.level": args.log_level}
    try:
        config = load_config(path, os.environ, overrides)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EX_CONFIG
    if args.action == "check":
        print(f"config ok: {path or 'no file (built-in defaults and environment)'} (digest {config.digest()})")
        return 0
    shown = effective(config, value_sources(path, os.environ, overrides))
    if args.json:
        print(json.dumps({"path": path, "digest": config.digest(), "values": shown}, indent=2))
        return 0
    print(f"# {path or 'no config file: built-in defaults'} (digest {config.digest()})")
    for name, entry in shown.items():
        value = json.dumps(entry["value"], ensure_ascii=False)
        print(f"{name} = {value}  # {entry['source']}")
    return 0


def add_location_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--home``: which file and home a command reads, found the daemon's way."""
    parser.add_argument("--config", help="YAML config file (default: $OPENCLAW_CONFIG, else <home>/openclaw.yaml)")
    parser.add_argument("--home", help="the daemon's home (default: $OPENCLAW_HOME, else ~/.openclaw)")


def add_config_parser(sub: Any) -> None:
    parser = sub.add_parser("config", help="check the config file, or show the effective config and its sources")
    parser.add_argument("action", choices=("check", "show"))
    parser.add_argument("file", nargs="?", help="the file to read (default: found the daemon's way)")
    add_location_options(parser)
    parser.add_argument("--json", action="store_true", help="show: print JSON")
    # The daemon's own flags (twistd openclaw --gateway/--web/--log-level), to see what they change.
    parser.add_argument("--gateway", help="as the daemon's --gateway endpoint")
    parser.add_argument("--web", help="as the daemon's --web endpoint")
    parser.add_argument("--log-level", help="as the daemon's --log-level")
    parser.set_defaults(func=cmd_config)
