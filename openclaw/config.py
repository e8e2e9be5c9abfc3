"""
Typed configuration: built-in defaults, then a YAML file, then ``OPENCLAW_*``
environment variables, then twistd command-line options.

Everything is validated before any port is bound.  A bad value raises
``ConfigError`` whose text is one line naming the key, the value and why; the
twistd plugin turns it into exit status 78 (EX_CONFIG) so a service manager
does not restart-loop on a broken file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Mapping

from openclaw.connectors.config import (
    PLATFORMS,
    SECRET_FIELDS,
    ConnectorsConfig,
    parse_platform,
)
from openclaw.parsing import (
    count,
    format_duration,
    got,
    origins,
    parse_duration,
    parse_size,
    positive,
    string,
    within,
)
from openclaw.proactive.config import (
    DEFAULT_CRON,
    ActiveHours,
    CheckConfig,
    CronConfig,
    MailConfig,
    parse_active_hours,
    parse_checks,
    parse_cron,
    parse_mail,
    parse_target,
    parse_timezone,
)

EX_CONFIG = 78

LOG_LEVELS = ("error", "warn", "info", "debug", "trace")


class ConfigError(Exception):
    """A configuration value is wrong; ``str()`` is the one line to print."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"config error: {key}: {reason}")
        self.key = key
        self.reason = reason


def _level(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in LOG_LEVELS:
        return value.strip().lower()
    raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {got(value)}")


def parse_endpoint(value: Any) -> str:
    """
    A Twisted server endpoint string (``tcp:8080:interface=127.0.0.1``,
    ``unix:/run/openclaw.sock``); parsed now so a typo fails before binding.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an endpoint like tcp:8080:interface=127.0.0.1, got {got(value)}")
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(reactor, value)
    except Exception as e:
        raise ValueError(
            f"expected an endpoint like tcp:8080:interface=127.0.0.1, got {got(value)} ({e})"
        ) from None
    return value


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "tcp:18789:interface=127.0.0.1"
    token: str = ""
    max_frame_bytes: int = 1024 * 1024
    drain_timeout: float = 30.0
    max_bad_frames: int = 10
    max_connections: int = 512
    max_connections_per_address: int = 128
    max_requests_per_second: int = 200
    request_burst: int = 400
    send_high_water: int = 64 * 1024
    send_hard_limit: int = 1024 * 1024
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    listen: str = "tcp:8080:interface=127.0.0.1"
    max_connections: int = 512
    request_timeout: float = 10.0
    max_webhook_body: int = 1024 * 1024


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@dataclass(frozen=True)
class StateConfig:
    save_every: float = 60.0


@dataclass(frozen=True)
class HeartbeatConfig:
    every: float = 30 * 60.0
    active_hours: ActiveHours | None = None
    timezone: str = ""
    target: str = "last"


@dataclass(frozen=True)
class StoreConfig:
    url: str = ""
    prefix: str = "openclaw:"
    history: int = 200
    retention: float = 30 * 86400.0


@dataclass(frozen=True)
class LanesConfig:
    max_concurrent: int = 128
    max_queue: int = 100
    idle_after: float = 24 * 3600.0


@dataclass(frozen=True)
class OutboxConfig:
    max_attempts: int = 8


@dataclass(frozen=True)
class ProviderConfig:
    """One model provider; ``api_key`` wins over the ``api_key_env`` variable."""

    kind: str
    model: str
    base_url: str
    api_key_env: str
    api_key: str = ""
    timeout: float = 60.0
    max_retries: int = 2


@dataclass(frozen=True)
class BrainConfig:
    providers: tuple[ProviderConfig, ...] = ()
    max_tool_rounds: int = 4
    history: int = 20
    tools: tuple[str, ...] = ("get_status", "remember", "recall")
    system_prompt: str = (
        "You are openclaw, a proactive personal assistant running as a daemon on your "
        "owner's machine. Be brief and concrete."
    )


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig = GatewayConfig()
    web: WebConfig = WebConfig()
    log: LogConfig = LogConfig()
    state: StateConfig = StateConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    store: StoreConfig = StoreConfig()
    brain: BrainConfig = BrainConfig()
    lanes: LanesConfig = LanesConfig()
    outbox: OutboxConfig = OutboxConfig()
    connectors: ConnectorsConfig = ConnectorsConfig()
    checks: tuple[CheckConfig, ...] = ()
    cron: tuple[CronConfig, ...] = DEFAULT_CRON
    mail: tuple[MailConfig, ...] = ()

    def digest(self) -> str:
        """A short hash of the effective config, secrets left out."""
        data = asdict(self)
        for section, key in SECRET_KEYS:
            data[section][key] = bool(data[section][key])
        for provider in data["brain"]["providers"]:
            provider["api_key"] = bool(provider["api_key"])
        for platform in data["connectors"].values():
            for key in SECRET_FIELDS:
                if key in platform:
                    platform[key] = bool(platform[key])
        for mailbox in data["mail"]:
            mailbox["password"] = bool(mailbox["password"])
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def secrets(self, environ: Mapping[str, str] = os.environ) -> list[str]:
        """The secret values in this config (and the API key variables it names), for redaction."""
        found = [v for s, k in SECRET_KEYS if (v := getattr(getattr(self, s), k))]
        for provider in self.brain.providers:
            found += [v for v in (provider.api_key, environ.get(provider.api_key_env, "")) if v]
        found += self.connectors.secrets(environ)
        for mailbox in self.mail:
            found += [v for v in (mailbox.password, environ.get(mailbox.password_env, "")) if v]
        return found


def parse_store_url(value: Any) -> str:
    """Empty (SQLite in the home), ``sqlite:///<path>`` or ``redis://host:port/db``."""
    if isinstance(value, str) and (
        value == "" or re.fullmatch(r"sqlite:///.+", value) or re.fullmatch(r"redis://[^/\s]+(/\d+)?", value)
    ):
        return value
    raise ValueError(f"expected sqlite:///<path> or redis://host:port/db, got {got(value)}")


PROVIDER_DEFAULTS = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com", "ANTHROPIC_API_KEY"),
}
_PROVIDER_KEYS = {"kind", "model", "base_url", "api_key_env", "api_key", "timeout", "max_retries"}


def parse_providers(value: Any) -> tuple[ProviderConfig, ...]:
    """
    A list of ``{kind, model, base_url?, api_key_env?, api_key?, timeout?,
    max_retries?}``; from the environment, the same list as JSON.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise ValueError(f"expected a JSON list of providers, got {got(value)}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of providers, got {got(value)}")
    providers = []
    for n, raw in enumerate(value):
        where = f"[{n}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {got(raw)}")
        unknown = set(raw) - _PROVIDER_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_PROVIDER_KEYS))})")
        kind = raw.get("kind")
        if kind not in PROVIDER_DEFAULTS:
            raise ValueError(f"{where}.kind: expected openai or anthropic, got {got(kind)}")
        model = raw.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}.model: expected a model name, got {got(model)}")
        base_url, key_env = PROVIDER_DEFAULTS[kind]
        base_url = raw.get("base_url", base_url)
        if not isinstance(base_url, str) or not re.match(r"https?://[^\s]+$", base_url):
            raise ValueError(f"{where}.base_url: expected an http(s) URL, got {got(base_url)}")
        try:
            providers.append(ProviderConfig(
                kind=kind, model=model, base_url=base_url.rstrip("/"),
                api_key_env=string(raw.get("api_key_env", key_env)),
                api_key=string(raw.get("api_key", "")),
                timeout=parse_duration(raw.get("timeout", 60)),
                max_retries=count(raw.get("max_retries", 2)),
            ))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return tuple(providers)


TOOL_NAMES = ("send_message", "get_status", "http_check", "remember", "recall")


def parse_tools(value: Any) -> tuple[str, ...]:
    """The allowlist of tools model brains may call."""
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(t in TOOL_NAMES for t in value):
        return tuple(value)
    raise ValueError(f"expected a list drawn from {', '.join(TOOL_NAMES)}, got {got(value)}")




# (section, key) -> (parser, what it is for); the dataclasses hold the defaults.
KEYS: dict[tuple[str, str], tuple[Callable[[Any], Any], str]] = {
    ("gateway", "listen"): (parse_endpoint, "WebSocket gateway endpoint (Twisted strports); keep 127.0.0.1 unless a proxy fronts it"),
    ("gateway", "token"): (string, "shared secret clients send in `connect`; empty: generated into <home>/gateway.token (0600)"),
    ("gateway", "max_frame_bytes"): (parse_size, "largest request frame answered; larger ones get `frame_too_large`"),
    ("gateway", "drain_timeout"): (parse_duration, "how long shutdown waits for in-flight requests (keep TimeoutStopSec above it)"),
    ("gateway", "max_bad_frames"): (positive, "malformed frames from one connection before it is closed (1008/1009)"),
    ("gateway", "max_connections"): (within(positive, 1, 65535, "1 to 65535"), "open WebSocket connections at most; more get HTTP 503 (1 to 65535)"),
    ("gateway", "max_connections_per_address"): (within(positive, 1, 65535, "1 to 65535"), "open connections from one client address at most (1 to 65535)"),
    ("gateway", "max_requests_per_second"): (within(count, 0, 1_000_000, "0 to 1000000"), "requests per second one connection may send on average; more get `rate_limited`; 0: no limit"),
    ("gateway", "request_burst"): (within(positive, 1, 1_000_000, "1 to 1000000"), "requests one connection may send at once above that rate"),
    ("gateway", "send_high_water"): (within(parse_size, 4096, 16 * 2**20, "4KiB to 16MiB"), "bytes queued for a client before its connection's requests stop being read"),
    ("gateway", "send_hard_limit"): (within(parse_size, 4096, 256 * 2**20, "4KiB to 256MiB"), "bytes queued for a client that does not read before it is closed with 1008"),
    ("gateway", "allowed_origins"): (origins, "browser origins (https://host:port) allowed to open the gateway; others get HTTP 403; none by default"),
    ("web", "listen"): (parse_endpoint, "health/metrics HTTP endpoint: /health /livez /readyz /metrics"),
    ("web", "max_connections"): (within(positive, 1, 65535, "1 to 65535"), "open HTTP connections at most; more get 503 (1 to 65535)"),
    ("web", "request_timeout"): (within(parse_duration, 0.5, 600, "0.5s to 10m"), "time a connection has to deliver a complete request (headers and body); then it is closed"),
    ("web", "max_webhook_body"): (within(parse_size, 0, 64 * 2**20, "0 to 64MiB"), "largest body a /webhooks/<name> POST may have; larger: 413 before it is read"),
    ("log", "level"): (_level, "error | warn | info | debug | trace (also LOG_LEVEL, --log-level)"),
    ("log", "max_bytes"): (parse_size, "rotate combined.log / error.log past this size"),
    ("log", "backups"): (positive, "rotated files kept per log"),
    ("state", "save_every"): (parse_duration, "how often gateway-state.json is written (also at shutdown)"),
    ("heartbeat", "every"): (parse_duration, "heartbeat interval; 0 disables; the first beat is one interval after start"),
    ("heartbeat", "active_hours"): (parse_active_hours, "{start: \"08:00\", end: \"23:00\"}: beat only between these local times; null: always"),
    ("heartbeat", "timezone"): (parse_timezone, "IANA zone for active hours, cron and reports (e.g. Europe/Berlin); empty: the host's"),
    ("heartbeat", "target"): (parse_target, "where alerts and reports go: last (the owner's last active session) or a session id"),
    ("store", "url"): (parse_store_url, "sqlite:///<path> or redis://host:port/db; empty: SQLite in <home>/data/"),
    ("store", "prefix"): (string, "Redis key prefix, so several daemons can share one Redis"),
    ("store", "history"): (positive, "messages of history kept per session"),
    ("store", "retention"): (parse_duration, "sent messages, finished events and journal records older than this are pruned; 0 keeps all"),
    ("brain", "providers"): (parse_providers, "model providers in failover order; none: the offline rules brain"),
    ("brain", "max_tool_rounds"): (count, "tool-call rounds a model may take for one message"),
    ("brain", "history"): (positive, "past messages of the session sent to the model"),
    ("brain", "tools"): (parse_tools, "tools model brains may call"),
    ("brain", "system_prompt"): (string, "the system prompt of model brains"),
    ("lanes", "max_concurrent"): (positive, "sessions handled at the same time (one message at a time within a session)"),
    ("lanes", "max_queue"): (positive, "messages waiting per session before senders are told to retry"),
    ("lanes", "idle_after"): (parse_duration, "an idle session's lane is dropped after this (re-created on demand)"),
    ("outbox", "max_attempts"): (positive, "delivery attempts before an outbox message is marked failed"),
    **{("connectors", name): (parse_platform(name), f"the {name} connector (docs/connectors.md)") for name in PLATFORMS},
}
# Sections that are lists of entries rather than mappings of keys.
LIST_SECTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "checks": (parse_checks, "monitors with their own interval (docs/heartbeat.md)"),
    "cron": (parse_cron, "scheduled jobs: report, message or heartbeat (docs/heartbeat.md)"),
    "mail": (parse_mail, "IMAP mailboxes to watch (docs/heartbeat.md)"),
}
PARSERS = {k: v[0] for k, v in KEYS.items()}
SECRET_KEYS = (("gateway", "token"),)

# Environment variables that are not config keys but are ours all the same.
RESERVED_ENV = frozenset({"OPENCLAW_HOME", "OPENCLAW_CONFIG"})


def env_name(section: str, key: str) -> str:
    """``gateway.drain_timeout`` -> ``OPENCLAW_GATEWAY_DRAIN_TIMEOUT``."""
    return f"OPENCLAW_{section}_{key}".upper()


def _apply(raw: dict[str, Any], where: Callable[[str, str], str]) -> dict:
    """
    Parse every ``section.key`` (and list section) of ``raw``; errors name
    the key via ``where``.
    """
    parsed: dict[str, Any] = {}
    for section, values in raw.items():
        if section in LIST_SECTIONS:
            try:
                parsed[section] = LIST_SECTIONS[section][0](values)
            except ValueError as e:
                raise ConfigError(where(section, ""), str(e)) from None
            continue
        for key, value in values.items():
            try:
                parsed.setdefault(section, {})[key] = PARSERS[section, key](value)
            except ValueError as e:
                raise ConfigError(where(section, key), str(e)) from None
    return parsed


def _known(section: str) -> str:
    return ", ".join(k for s, k in PARSERS if s == section)


def _from_yaml(document: Any, path: str) -> dict[str, dict[str, Any]]:
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(path, f"expected a mapping of sections, got {type(document).__name__}")
    sections = sorted({s for s, _ in PARSERS} | set(LIST_SECTIONS))
    raw: dict[str, dict[str, Any]] = {}
    for section, values in document.items():
        if section not in sections:
            raise ConfigError(str(section), f"unknown section (known: {', '.join(sections)})")
        if section in LIST_SECTIONS:
            raw[section] = values
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(section, f"expected a mapping, got {got(values)}")
        for key, value in values.items():
            if (section, key) not in PARSERS:
                raise ConfigError(f"{section}.{key}", f"unknown key (known: {_known(section)})")
            raw.setdefault(section, {})[key] = value
    return raw


def _from_env(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
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
            raise ConfigError(name, "unknown environment variable (config keys map to OPENCLAW_<SECTION>_<KEY>)")
        section, key = names[name]
        raw.setdefault(section, {})[key] = value
    if "LOG_LEVEL" in environ and "OPENCLAW_LOG_LEVEL" not in environ:
        raw.setdefault("log", {})["level"] = environ["LOG_LEVEL"]
    return raw


def read_yaml(path: str) -> Any:
    """Read and parse the YAML file at ``path``; failures are ConfigErrors."""
    import yaml  # only when a file is given: the no-config start stays lean

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(path, f"cannot read config file ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(path, f"invalid YAML{where}: {getattr(e, 'problem', e)}") from None


def build_config(
    document: Any = None,
    environ: Mapping[str, str] = {},
    overrides: Mapping[str, Any] = {},
    path: str = "<config>",
) -> Config:
    """
    Layer defaults, a parsed YAML ``document``, ``environ`` and command-line
    ``overrides`` (``{"gateway.listen": ...}``) into a validated Config.
    """
    layers = [
        _apply(_from_yaml(document, path), lambda s, k: f"{s}.{k}" if k else s),
        _apply(_from_env(environ), lambda s, k: f"{env_name(s, k)} ({s}.{k})" if k else f"OPENCLAW_{s.upper()} ({s})"),
    ]
    cli: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is not None:
            section, key = dotted.split(".")
            cli.setdefault(section, {})[key] = value
    layers.append(_apply(cli, lambda s, k: f"{s}.{k}"))
    config = Config()
    for layer in layers:
        for section, values in layer.items():
            if section in LIST_SECTIONS:
                config = replace(config, **{section: values})
                continue
            config = replace(config, **{section: replace(getattr(config, section), **values)})
    return config


def load_config(
    path: str | None, environ: Mapping[str, str] = os.environ, overrides: Mapping[str, Any] = {}
) -> Config:
    """Load the YAML file at ``path`` (if any) and layer env and overrides on top."""
    document = read_yaml(path) if path else None
    return build_config(document, environ, overrides, path or "<config>")


def default_home(environ: Mapping[str, str] = os.environ) -> str:
    """``$OPENCLAW_HOME``, else ``~/.openclaw``."""
    return environ.get("OPENCLAW_HOME") or os.path.expanduser("~/.openclaw")


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
    parser = getattr(PARSERS[section, key], "inner", PARSERS[section, key])
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
