"""
The ``connectors:`` section: one mapping per platform, parsed into frozen
dataclasses.  Credentials come from the file or from the environment
variable each ``*_env`` key names; neither is ever logged (``Config.secrets``
feeds the log redactor).  Every platform base URL defaults to the real
service and is how tests point a connector at a local server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from openclaw.config.parsing import boolean, duration, got, json_text, whole
from openclaw.config.parsing import fields as fields_of


def _url(value: Any) -> str:
    if isinstance(value, str) and re.match(r"(https?|wss?)://[^\s]+$", value):
        return value.rstrip("/")
    raise ValueError(f"expected an http(s) or ws(s) URL, got {got(value)}")


def _senders(value: Any) -> tuple[str, ...]:
    """Sender ids (numbers are fine: Telegram ids are); ``*`` allows everyone."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return tuple(str(v) for v in value)
    raise ValueError(f"expected a list of sender ids, got {got(value)}")


def _mode(value: Any) -> str:
    if value in ("polling", "webhook"):
        return value
    raise ValueError(f"expected polling or webhook, got {got(value)}")


@dataclass(frozen=True)
class Common:
    """What every connector has: who may talk, how hard, how it stays alive."""

    enabled: bool = False
    allow_from: tuple[str, ...] = ()
    pairing: bool = False
    rate_per_minute: int = 10
    stall_timeout: float = 90.0
    backoff_max: float = 60.0
    stable_after: float = 60.0


@dataclass(frozen=True)
class TelegramConfig(Common):
    token: str = ""
    token_env: str = "TELEGRAM_BOT_TOKEN"
    api_url: str = "https://api.telegram.org"
    mode: str = "polling"
    poll_timeout: float = 50.0
    webhook_secret: str = ""


@dataclass(frozen=True)
class DiscordConfig(Common):
    token: str = ""
    token_env: str = "DISCORD_BOT_TOKEN"
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/?v=10&encoding=json"


@dataclass(frozen=True)
class WhatsAppConfig(Common):
    token: str = ""
    token_env: str = "WHATSAPP_TOKEN"
    phone_number_id: str = ""
    app_secret: str = ""
    app_secret_env: str = "WHATSAPP_APP_SECRET"
    verify_token: str = ""
    api_url: str = "https://graph.facebook.com/v21.0"


@dataclass(frozen=True)
class SlackConfig(Common):
    app_token: str = ""
    app_token_env: str = "SLACK_APP_TOKEN"
    bot_token: str = ""
    bot_token_env: str = "SLACK_BOT_TOKEN"
    api_url: str = "https://slack.com/api"


@dataclass(frozen=True)
class SmtpConfig(Common):
    host: str = "localhost"
    port: int = 587
    starttls: bool = True
    user: str = ""
    password: str = ""
    password_env: str = "SMTP_PASSWORD"
    sender: str = ""
    to: tuple[str, ...] = ()
    timeout: float = 30.0


PLATFORMS: dict[str, type] = {
    "telegram": TelegramConfig,
    "discord": DiscordConfig,
    "whatsapp": WhatsAppConfig,
    "slack": SlackConfig,
    "smtp": SmtpConfig,
}

_FIELD_PARSERS: dict[str, Callable[[Any], Any]] = {
    "enabled": boolean, "allow_from": _senders, "pairing": boolean, "rate_per_minute": whole(0, 10_000),
    "stall_timeout": duration(0, 86400), "backoff_max": duration(0, 3600), "stable_after": duration(0, 86400),
    "api_url": _url, "gateway_url": _url, "mode": _mode, "poll_timeout": duration(0, 600),
    "port": whole(1, 65535), "starttls": boolean, "to": _senders, "timeout": duration(0.01, 600),
}

SECRET_FIELDS = ("token", "app_token", "bot_token", "app_secret", "password", "webhook_secret", "verify_token")


@dataclass(frozen=True)
class ConnectorsConfig:
    telegram: TelegramConfig = TelegramConfig()
    discord: DiscordConfig = DiscordConfig()
    whatsapp: WhatsAppConfig = WhatsAppConfig()
    slack: SlackConfig = SlackConfig()
    smtp: SmtpConfig = SmtpConfig()

    def enabled(self) -> list[tuple[str, Any]]:
        """``(name, config)`` of each enabled connector, in start order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name).enabled]

    def secrets(self, environ: Mapping[str, str]) -> list[str]:
        """Credentials in the file and in the variables the ``*_env`` keys name."""
        found = []
        for f in fields(self):
            platform = getattr(self, f.name)
            for name in SECRET_FIELDS:
                found.append(getattr(platform, name, ""))
                found.append(environ.get(getattr(platform, f"{name}_env", ""), ""))
        return [s for s in found if s]


def credential(platform: Any, name: str, environ: Mapping[str, str]) -> str:
    """``platform.<name>`` from the file, else from the variable ``<name>_env`` names."""
    value = getattr(platform, name)
    env = getattr(platform, f"{name}_env", "")
    return value or (environ.get(env, "") if env else "")


def parse_platform(platform: str) -> Callable[[Any], Any]:
    """The parser of ``connectors.<platform>``: a mapping of that platform's keys."""
    cls = PLATFORMS[platform]
    known = {f.name for f in fields(cls)}

    def parse(value: Any) -> Any:
        config = cls(**fields_of(json_text(value, "mapping"), known, _FIELD_PARSERS))
        if platform == "telegram" and config.mode == "webhook" and config.enabled and not config.webhook_secret:
            raise ValueError("webhook_secret: webhook mode needs a secret token (Telegram sends it back in a header)")
        return config

    return parse
