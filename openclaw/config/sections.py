"""
The configuration's sections: one frozen dataclass per section (holding the
defaults), the parser of every key and the table that names them.  A parser
raises ``ValueError`` with the reason; ``loading`` adds the key.

This package is a leaf: it imports nothing from the rest of openclaw, so
every layer may import its section from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from openclaw.config.connectors import (
    PLATFORMS,
    SECRET_FIELDS,
    ConnectorsConfig,
    parse_platform,
)
from openclaw.config.parsing import (
    count,
    got,
    origins,
    parse_duration,
    parse_size,
    positive,
    string,
    within,
)
from openclaw.config.proactive import (
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

LOG_LEVELS = ("error", "warn", "info", "debug", "trace")


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
class DaemonConfig:
    drain_timeout: float = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "tcp:18789:interface=127.0.0.1"
    token: str = ""
    max_frame_bytes: int = 1024 * 1024
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
    daemon: DaemonConfig = DaemonConfig()
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
    ("daemon", "drain_timeout"): (parse_duration, "shutdown budget for the whole tree: in-flight replies, outbox flush, connections (keep TimeoutStopSec above it)"),
    ("gateway", "listen"): (parse_endpoint, "WebSocket gateway endpoint (Twisted strports); keep 127.0.0.1 unless a proxy fronts it"),
    ("gateway", "token"): (string, "shared secret clients send in `connect`; empty: generated into <home>/gateway.token (0600)"),
    ("gateway", "max_frame_bytes"): (parse_size, "largest request frame answered; larger ones get `frame_too_large`"),
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


def env_name(section: str, key: str) -> str:
    """``daemon.drain_timeout`` -> ``OPENCLAW_DAEMON_DRAIN_TIMEOUT``."""
    return f"OPENCLAW_{section}_{key}".upper()
