"""
The connectors' parent service.  Connectors start in the order configured and
stop in reverse; their health feeds ``/health``'s ``connections``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Mapping

from openclaw.connectors.config import ConnectorsConfig
from openclaw.interfaces import IConnector
from openclaw.ordered import OrderedMultiService

# Imported only when enabled: a daemon without chat platforms stays lean.
CLASSES = {
    "telegram": "openclaw.connectors.telegram:TelegramConnector",
    "discord": "openclaw.connectors.discord:DiscordConnector",
    "whatsapp": "openclaw.connectors.whatsapp:WhatsAppConnector",
    "slack": "openclaw.connectors.slack:SlackConnector",
    "smtp": "openclaw.connectors.smtp:SmtpConnector",
}


def make_connectors(
    config: ConnectorsConfig, reactor: Any, pipeline: Any, store: Any, notifier: Any,
    environ: Mapping[str, str] = os.environ,
) -> list[Any]:
    """The enabled connectors, built but not started."""
    built = []
    for name, platform in config.enabled():
        module, cls = CLASSES[name].split(":")
        connector_class = getattr(importlib.import_module(module), cls)
        built.append(connector_class(reactor, platform, pipeline, store, notifier, environ=environ))
    return built


class ConnectorsService(OrderedMultiService):
    """Holds the enabled connectors; one failing never stops the others."""

    def health(self) -> dict[str, dict[str, Any]]:
        """Each connector's health detail, by name."""
        return {c.name: c.health() for c in self if IConnector.providedBy(c)}
