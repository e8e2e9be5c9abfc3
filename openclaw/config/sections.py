"""
The configuration's sections: one frozen dataclass per section (holding the
defaults), the parser of every key and the table that names them.  A parser
raises ``ValueError`` with the reason; ``loading`` adds the key.

This package is a leaf: it imports nothing from the rest of openclaw, so
every layer may import its section from here.
"""

from __future__ import annotations

import hashlib
import ipaddress
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
from openclaw.config.parsing import boolean, duration, got, origins, size, string, whole, ws_url

MiB = 2**20
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
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(None, value)  # no reactor: parsed, never listened on
    except Exception as e:
        raise ValueError(
            f"expected an endpoint like tcp:8080:interface=127.0.0.1, got {got(value)} ({e})"
        ) from None
    port = getattr(endpoint, "_port", None)  # TCP, TCP6 and SSL endpoints; UNIX ones have none
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ValueError(f"the port must be from 1 to 65535 (or 0: any free port), got {port} in {got(value)}")
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
    backlog: int = 511


@dataclass(frozen=True)
class WebConfig:
    listen: str = "tcp:8080:interface=127.0.0.1"
    max_connections: int = 512
    request_timeout: float = 10.0
    max_webhook_body: int = 1024 * 1024
    console: bool = True
    console_gateway_url: str = ""
    backlog: int = 511


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    flush_interval: float = 0.2


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
class ClusterConfig:
    """Several daemons on one Redis (docs/deployment.md); ignored with SQLite."""

    lease_ttl: float = 15.0
    instance_ttl: float = 15.0


@dataclass(frozen=True)
class LanesConfig:
    max_concurrent: int = 128
    max_queue: int = 100
    max_pending: int = 1000
    max_wait: float = 0.25
    wait_answers: int = 4
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
    http_check_allow: tuple[str, ...] = ()
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
    cluster: ClusterConfig = ClusterConfig()
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
        smtp = self.connectors.smtp
        found += sasl_forms(smtp.user, smtp.password or environ.get(smtp.password_env, ""))
        for mailbox in self.mail:
            found += [v for v in (mailbox.password, environ.get(mailbox.password_env, "")) if v]
            found += sasl_forms(mailbox.user, mailbox.password or environ.get(mailbox.password_env, ""))
        return found


def sasl_forms(user: str, password: str) -> list[str]:
    """
    What a login puts on the wire besides the bare password: SASL PLAIN's
    ``\\0user\\0pass`` (and ``user\\0pass``), which redaction then knows in
    base64 as an AUTH PLAIN transcript holds it.  Empty without both.
    """
    return [f"{user}\0{password}", f"\0{user}\0{password}"] if user and password else []


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


_provider_timeout, _provider_retries = duration(1, 600), whole(0, 10)


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
                timeout=_provider_timeout(raw.get("timeout", 60)),
                max_retries=_provider_retries(raw.get("max_retries", 2)),
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


def parse_networks(value: Any) -> tuple[str, ...]:
    """A list (or comma-separated text) of IP networks or addresses, e.g. ``10.0.0.0/8, ::1``."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of IP networks, got {got(value)}")
    try:
        return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in value)
    except ValueError as e:
        raise ValueError(f"expected a list of IP networks: {e}") from None


# (section, key) -> (parser, what it is for); the dataclasses hold the defaults.
KEYS: dict[tuple[str, str], tuple[Callable[[Any], Any], str]] = {
    ("daemon", "drain_timeout"): (duration(0, 3600), "shutdown budget for the whole tree: in-flight replies, outbox flush, connections (keep TimeoutStopSec above it)"),
    ("gateway", "listen"): (parse_endpoint, "WebSocket gateway endpoint (Twisted strports); keep 127.0.0.1 unless a proxy fronts it"),
    ("gateway", "token"): (string, "shared secret clients send in `connect`; empty: generated into <home>/gateway.token (0600)"),
    ("gateway", "max_frame_bytes"): (size(256, 64 * MiB), "largest request frame answered; larger ones get `frame_too_large`"),
    ("gateway", "max_bad_frames"): (whole(1, 1000), "malformed frames from one connection before it is closed (1008/1009)"),
    ("gateway", "max_connections"): (whole(1, 65535), "open WebSocket connections at most; more get HTTP 503"),
    ("gateway", "max_connections_per_address"): (whole(1, 65535), "open connections from one client address at most"),
    ("gateway", "max_requests_per_second"): (whole(0, 1_000_000), "requests per second one connection may send on average; more get `rate_limited`; 0: no limit"),
    ("gateway", "request_burst"): (whole(1, 1_000_000), "requests one connection may send at once above that rate"),
    ("gateway", "send_high_water"): (size(4096, 16 * MiB), "bytes queued for a client before its connection's requests stop being read"),
    ("gateway", "send_hard_limit"): (size(4096, 256 * MiB), "bytes queued for a client that does not read before it is closed with 1008"),
    ("gateway", "allowed_origins"): (origins, "browser origins (https://host:port) allowed to open the gateway; others get HTTP 403; none by default"),
    ("gateway", "backlog"): (whole(1, 65535), "connections the kernel queues before the gateway accepts them (listen backlog; capped by net.core.somaxconn; a restart applies it)"),
    ("web", "listen"): (parse_endpoint, "health/metrics HTTP endpoint: /health /livez /readyz /metrics"),
    ("web", "max_connections"): (whole(1, 65535), "open HTTP connections at most; more get 503"),
    ("web", "request_timeout"): (duration(0.5, 600), "time a connection has to deliver a complete request (headers and body); then it is closed"),
    ("web", "max_webhook_body"): (size(0, 64 * MiB), "largest body a /webhooks/<name> POST may have; larger: 413 before it is read"),
    ("web", "console"): (boolean, "serve the web console at /console/ (it needs the gateway token)"),
    ("web", "console_gateway_url"): (ws_url, "where the console page finds the gateway; empty: ws://<the page's host>:<gateway port>/; behind a TLS proxy e.g. wss://host/gateway"),
    ("web", "backlog"): (whole(1, 65535), "connections the kernel queues before the web server accepts them (listen backlog; capped by net.core.somaxconn; a restart applies it)"),
    ("log", "level"): (_level, "error | warn | info | debug | trace (also LOG_LEVEL, --log-level)"),
    ("log", "max_bytes"): (size(64 * 1024, 1024 * MiB), "rotate combined.log / error.log past this size"),
    ("log", "backups"): (whole(1, 100), "rotated files kept per log"),
    ("log", "flush_interval"): (duration(0.05, 5, off=True), "info and lower records wait this long at most to be written together (warn and error at once; all on stop); 0: each at once"),
    ("state", "save_every"): (duration(1, 86400, off=True), "how often gateway-state.json is written (also at shutdown)"),
    ("heartbeat", "every"): (duration(1, 7 * 86400, off=True), "heartbeat interval; 0 disables; the first beat is one interval after start"),
    ("heartbeat", "active_hours"): (parse_active_hours, "{start: \"08:00\", end: \"23:00\"}: beat only between these local times; null: always"),
    ("heartbeat", "timezone"): (parse_timezone, "IANA zone for active hours, cron and reports (e.g. Europe/Berlin); empty: the host's"),
    ("heartbeat", "target"): (parse_target, "where alerts and reports go: last (the owner's last active session) or a session id"),
    ("store", "url"): (parse_store_url, "sqlite:///<path> or redis://host:port/db; empty: SQLite in <home>/data/"),
    ("store", "prefix"): (string, "Redis key prefix, so several daemons can share one Redis"),
    ("store", "history"): (whole(1, 100_000), "messages of history kept per session"),
    ("store", "retention"): (duration(3600, 10 * 365 * 86400, off=True), "sent messages, finished events and journal records older than this are pruned; 0 keeps all"),
    ("cluster", "lease_ttl"): (duration(0.5, 600), "with Redis: a dead instance's scheduler and connector leases pass to another within this; renewed every third of it"),
    ("cluster", "instance_ttl"): (duration(0.5, 600), "with Redis: an instance is alive while its key, renewed every third of this, has not expired"),
    ("brain", "providers"): (parse_providers, "model providers in failover order; none: the offline rules brain"),
    ("brain", "max_tool_rounds"): (whole(0, 32), "tool-call rounds a model may take for one message"),
    ("brain", "history"): (whole(1, 1000), "past messages of the session sent to the model"),
    ("brain", "tools"): (parse_tools, "tools model brains may call"),
    ("brain", "system_prompt"): (string, "the system prompt of model brains"),
    ("brain", "http_check_allow"): (parse_networks, "networks http_check may reach although loopback, private, "
                                                    "link-local or metadata (e.g. [192.168.1.0/24]); none by default"),
    ("lanes", "max_concurrent"): (whole(1, 100_000), "sessions handled at the same time (one message at a time within a session)"),
    ("lanes", "max_queue"): (whole(1, 1_000_000), "acknowledged messages not yet answered per session before its senders are told busy"),
    ("lanes", "max_pending"): (whole(1, 10_000_000), "acknowledged messages not yet answered over all sessions before senders are told busy"),
    ("lanes", "max_wait"): (duration(0.01, 86400, off=True), "estimated wait for a reply past which senders are told busy (at least wait_answers answers' time); 0: no bound"),
    ("lanes", "wait_answers"): (whole(0, 1000), "the wait bound is at least this many answers' measured handling time, so a slow model still queues a few"),
    ("lanes", "idle_after"): (duration(60, 30 * 86400), "an idle session's lane is dropped after this (re-created on demand)"),
    ("outbox", "max_attempts"): (whole(1, 1000), "delivery attempts before an outbox message is marked failed"),
    **{("connectors", name): (parse_platform(name), f"the {name} connector (docs/connectors.md)") for name in PLATFORMS},
}
# Sections that are lists of entries rather than mappings of keys.
LIST_SECTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "checks": (parse_checks, "monitors with their own interval (docs/heartbeat.md)"),
    "cron": (parse_cron, "scheduled jobs: report, message or heartbeat (docs/heartbeat.md)"),
    "mail": (parse_mail, "IMAP mailboxes to watch (docs/heartbeat.md)"),
}
PARSERS = {k: v[0] for k, v in KEYS.items()}

#: Keys whose parser is Twisted's endpoint parser: parsed after the rest.
ENDPOINT_KEYS = frozenset(k for k, parser in PARSERS.items() if parser is parse_endpoint)
SECRET_KEYS = (("gateway", "token"),)


def env_name(section: str, key: str) -> str:
    """``daemon.drain_timeout`` -> ``OPENCLAW_DAEMON_DRAIN_TIMEOUT``."""
    return f"OPENCLAW_{section}_{key}".upper()
