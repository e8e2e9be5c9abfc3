"""
Where the configuration comes from and how the layers combine: built-in
defaults, then a YAML file, then ``OPENCLAW_*`` environment variables, then
command-line options.  The daemon and every CLI command find the file the
same way (``config_path``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from openclaw.config.parsing import got
from openclaw.config.sections import ENDPOINT_KEYS, LIST_SECTIONS, PARSERS, Config, env_name

EX_CONFIG = 78


class ConfigError(Exception):
    """A configuration value is wrong; ``str()`` is the one line to print."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config error: {key}: {reason}")
        self.key = key
        self.reason = reason


class ConfigErrors(ConfigError):
    """
    Several values are wrong: ``str()`` is one line per error, so a fix is
    not followed by the next complaint.  ``key`` and ``reason`` are the first's.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        Exception.__init__(self, "\n".join(str(e) for e in errors))
        self.errors = errors
        self.key, self.reason = errors[0].key, errors[0].reason


def _raise(errors: list[ConfigError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


#: A config file larger than this is refused before it is parsed.
MAX_FILE_BYTES = 1024 * 1024


# Keys that moved, so an old file gets a pointer instead of "unknown key".
MOVED = {("gateway", "drain_timeout"): "daemon.drain_timeout"}

# Environment variables that are not config keys but are ours all the same.
RESERVED_ENV = frozenset({"OPENCLAW_HOME", "OPENCLAW_CONFIG"})


def _apply(raw: dict[str, Any], where: Callable[[str, str], str], errors: list[ConfigError],
           deferred: list[tuple[str, str, str, Any]]) -> dict:
    """
    Parse every ``section.key`` (and list section) of ``raw``; errors name
    the key via ``where`` and are added to ``errors``.  Listener endpoints
    are kept as given and added to ``deferred`` (``build_config`` parses
    them last).
    """
    parsed: dict[str, Any] = {}
    for section, values in raw.items():
        if section in LIST_SECTIONS:
            try:
                parsed[section] = LIST_SECTIONS[section][0](values)
            except (ValueError, RecursionError) as e:
                errors.append(ConfigError(where(section, ""), _reason(e)))
            continue
        for key, value in values.items():
            if (section, key) in ENDPOINT_KEYS:
                deferred.append((where(section, key), section, key, value))
                parsed.setdefault(section, {})[key] = value
                continue
            try:
                parsed.setdefault(section, {})[key] = PARSERS[section, key](value)
            except (ValueError, RecursionError) as e:
                errors.append(ConfigError(where(section, key), _reason(e)))
    return parsed


def _reason(error: Exception) -> str:
    return "nested too deeply" if isinstance(error, RecursionError) else str(error)


def _known(section: str) -> str:
    return ", ".join(k for s, k in PARSERS if s == section)


def _from_yaml(document: Any, path: str, errors: list[ConfigError]) -> dict[str, dict[str, Any]]:
    if document is None:
        return {}
    if not isinstance(document, dict):
        errors.append(ConfigError(path, f"expected a mapping of sections, got {type(document).__name__}"))
        return {}
    sections = sorted({s for s, _ in PARSERS} | set(LIST_SECTIONS))
    raw: dict[str, dict[str, Any]] = {}
    for section, values in document.items():
        if section not in sections:
            errors.append(ConfigError(str(section)[:64], f"unknown section (known: {', '.join(sections)})"))
            continue
        if section in LIST_SECTIONS:
            raw[section] = values
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            errors.append(ConfigError(section, f"expected a mapping, got {got(values)}"))
            continue
        for key, value in values.items():
            if (section, key) not in PARSERS:
                if (section, key) in MOVED:
                    errors.append(ConfigError(f"{section}.{key}", f"moved to {MOVED[section, key]}"))
                else:
                    errors.append(ConfigError(f"{section}.{str(key)[:64]}", f"unknown key (known: {_known(section)})"))
                continue
            raw.setdefault(section, {})[key] = value
    return raw


def _from_env(environ: Mapping[str, str], errors: list[ConfigError]) -> dict[str, dict[str, Any]]:
    names = {env_name(s, k): (s, k) for s, k in PARSERS}
    raw: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("OPENCLAW_") or name in RESERVED_ENV:
            continue
        section = name[len("OPENCLAW_"):].lower()
        if section in LIST_SECTIONS:
            raw[section] = value
            continue
        if name not in names:
            moved = {env_name(*old): env_name(*new.split(".")) for old, new in MOVED.items()}
            if name in moved:
                errors.append(ConfigError(name, f"moved to {moved[name]}"))
            else:
                errors.append(ConfigError(
                    name, "unknown environment variable (config keys map to OPENCLAW_<SECTION>_<KEY>)"))
            continue
        section, key = names[name]
        raw.setdefault(section, {})[key] = value
    if "LOG_LEVEL" in environ and "OPENCLAW_LOG_LEVEL" not in environ:
        raw.setdefault("log", {})["level"] = environ["LOG_LEVEL"]
    return raw


def read_yaml(path: str) -> Any:
    """Read and parse the YAML file at ``path``; failures are ConfigErrors."""
    import yaml  # only when a file is given: the no-config start stays lean

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(path, f"cannot read config file ({e.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(path, f"larger than {MAX_FILE_BYTES // 1024} KiB: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(path, "invalid YAML: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(path, f"invalid YAML{where}: {getattr(e, 'problem', e)}") from None


def build_config(
    document: Any = None,
    environ: Mapping[str, str] = {},
    overrides: Mapping[str, Any] = {},
    path: str = "<config>",
    before_endpoints: Callable[[Config], Any] | None = None,
) -> Config:
    """
    Layer defaults, a parsed YAML ``document``, ``environ`` and command-line
    ``overrides`` (``{"gateway.listen": ...}``) into a validated Config.
    Listener endpoints are parsed last, by Twisted, whose endpoint module
    settles whether the process has TLS: ``before_endpoints`` sees the
    config first, with those strings as given (``openclaw.system.tlsstack``).
    """
    errors: list[ConfigError] = []
    deferred: list[tuple[str, str, str, Any]] = []
    layers = [
        _apply(_from_yaml(document, path, errors), lambda s, k: f"{s}.{k}" if k else s, errors, deferred),
        _apply(_from_env(environ, errors),
               lambda s, k: f"{env_name(s, k)} ({s}.{k})" if k else f"OPENCLAW_{s.upper()} ({s})", errors, deferred),
    ]
    cli: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is not None:
            section, key = dotted.split(".")
            cli.setdefault(section, {})[key] = value
    layers.append(_apply(cli, lambda s, k: f"{s}.{k}", errors, deferred))
    config = Config()
    for layer in layers if not errors else ():
        for section, values in layer.items():
            if section in LIST_SECTIONS:
                config = replace(config, **{section: values})
                continue
            config = replace(config, **{section: replace(getattr(config, section), **values)})
    if before_endpoints is not None and not errors:
        before_endpoints(config)
    for where, section, key, value in deferred:
        try:
            PARSERS[section, key](value)
        except ValueError as e:
            errors.append(ConfigError(where, str(e)))
    _raise(errors)
    return config


def load_config(
    path: str | None, environ: Mapping[str, str] = os.environ, overrides: Mapping[str, Any] = {},
    before_endpoints: Callable[[Config], Any] | None = None,
) -> Config:
    """Load the YAML file at ``path`` (if any) and layer env and overrides on top."""
    document = read_yaml(path) if path else None
    return build_config(document, environ, overrides, path or "<config>", before_endpoints)


def default_home(environ: Mapping[str, str] = os.environ) -> str:
    """``$OPENCLAW_HOME``, else ``~/.openclaw``."""
    return environ.get("OPENCLAW_HOME") or os.path.expanduser("~/.openclaw")


HOME_CONFIG = "openclaw.yaml"


def config_path(explicit: str | None, home: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """
    The one way every part of openclaw finds its file: ``--config``, then
    ``$OPENCLAW_CONFIG``, then ``<home>/openclaw.yaml`` if it exists, else
    none (built-in defaults).  A named file that does not exist is an error
    when read, not a silent fallback.
    """
    if explicit:
        return explicit
    if environ.get("OPENCLAW_CONFIG"):
        return environ["OPENCLAW_CONFIG"]
    candidate = os.path.join(home, HOME_CONFIG)
    return candidate if os.path.exists(candidate) else None


@dataclass(frozen=True)
class ConfigSource:
    """
    Where a daemon's configuration comes from (its ``--config``, home,
    environment and command-line overrides), so a reload reads it again the
    same way: a ``<home>/openclaw.yaml`` created after the start is found.
    """

    explicit: str | None
    home: str
    environ: Mapping[str, str]
    overrides: Mapping[str, Any]

    def path(self) -> str | None:
        return config_path(self.explicit, self.home, self.environ)

    def load(self, before_endpoints: Callable[[Config], Any] | None = None) -> Config:
        return load_config(self.path(), self.environ, self.overrides, before_endpoints)


def tighten_if_secret(path: str | None) -> int | None:
    """
    A config file that holds a secret (a token, a password) and that group
    or others may read is made 0600, as the token file is.  :return: its
    mode before, when it was tightened (the caller warns), else ``None``.
    A file we do not own is left alone: the mode shows in the warning.
    """
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if not mode & 0o077 or not build_config(read_yaml(path), path=path).secrets({}):
            return None
        os.chmod(path, 0o600)
    except PermissionError:
        return mode
    except (OSError, ConfigError):
        return None
    return mode


def value_sources(
    path: str | None, environ: Mapping[str, str] = os.environ, overrides: Mapping[str, Any] = {}
) -> dict[str, str]:
    """
    Where each set value of the effective config came from, by ``section.key``
    (list sections by name): ``file <path>``, ``environment <NAME>`` or
    ``flag``; a key not named here has its default.  Errors are ignored here:
    ``load_config`` reports them.
    """
    ignored: list[ConfigError] = []
    found: dict[str, str] = {}
    if path:
        for section, values in _from_yaml(read_yaml(path), path, ignored).items():
            for key in ([""] if section in LIST_SECTIONS else values):
                found[f"{section}.{key}".rstrip(".")] = f"file {path}"
    for section, values in _from_env(environ, ignored).items():
        for key in ([""] if section in LIST_SECTIONS else values):
            name = f"OPENCLAW_{section.upper()}" if not key else env_name(section, key)
            if (section, key) == ("log", "level") and name not in environ:
                name = "LOG_LEVEL"
            found[f"{section}.{key}".rstrip(".")] = f"environment {name}"
    for dotted, value in overrides.items():
        if value is not None:
            found[dotted] = "flag"
    return found
