"""
The connectors' parent service.  Connectors start in the order configured and
stop in reverse; their health feeds ``/health``'s ``connections``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace
from typing import Any, Callable, Mapping

from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from openclaw.config import Config
from openclaw.config.connectors import PLATFORMS, ConnectorsConfig
from openclaw.eliotutil import log, message_type, typed
from openclaw.interfaces import IConnector, IReconfigurable, IStatusSource
from openclaw.ordered import OrderedMultiService
from openclaw.status import StatusSource

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


#: Fields a running connector takes without reconnecting.
ACCESS_FIELDS = ("allow_from", "pairing", "rate_per_minute")


SERVICE = typed("service", [str], "the connector's name")
CONNECTORS_ACCESS_CHANGED = message_type("openclaw:connectors:access-changed", [SERVICE],
                                         "a reload changed who may talk to a connector (it stays connected)")
CONNECTORS_REPLACE = message_type("openclaw:connectors:replace", [
    SERVICE, typed("enabled", [bool], "whether it runs again with the new config"),
], "a reload changed a connector: it is stopped and, if enabled, started anew")


def only_access_changed(before: Any, after: Any) -> bool:
    """Whether two sections of one platform differ in who may talk only."""
    neutral = {name: getattr(before, name) for name in ACCESS_FIELDS}
    return replace(after, **neutral) == before


@implementer(IReconfigurable, IStatusSource)
class ConnectorsService(StatusSource, OrderedMultiService):
    """
    Holds the enabled connectors; one failing never stops the others.

    :param make: builds the connectors of a ``ConnectorsConfig`` (not started);
        used at construction of the tree and again by a reload for the
        platforms whose section changed.
    """

    def __init__(self, runtime: Any, make: Callable[[ConnectorsConfig], list[Any]]) -> None:
        super().__init__(runtime)
        self._make = make
        self.config: ConnectorsConfig | None = None
        #: Platform webhooks by name, looked up per request (a reload may replace them).
        self.webhooks = _Webhooks(self)

    def build(self, config: ConnectorsConfig) -> None:
        """Add the connectors ``config`` enables (tree construction)."""
        self.config = config
        for connector in self._make(config):
            connector.setServiceParent(self)

    status_key = "connectors"

    def health(self) -> dict[str, dict[str, Any]]:
        """Each connector's health detail, by name."""
        return {c.name: c.health() for c in self if IConnector.providedBy(c)}

    status = health

    def problems(self) -> list[str]:
        return [f"connector {name} is {detail.get('state', 'down')}"
                for name, detail in self.health().items() if not detail.get("connected")]

    def deliverer(self, channel: str) -> Callable[[Any], Any] | None:
        connector = self.namedServices.get(channel)
        return connector.deliver if connector is not None else None

    @inlineCallbacks
    def reconfigure(self, config: Config) -> Any:
        """
        Replace only the connectors whose section changed (stop the old one,
        start one built from the new section); the others keep their socket
        and their offset.
        """
        old, new = self.config, config.connectors
        if old == new:
            return
        for name in PLATFORMS:
            before, after = getattr(old, name), getattr(new, name)
            if before == after:
                continue
            running = self.namedServices.get(name)
            if running is not None and before.enabled and after.enabled and only_access_changed(before, after):
                log(CONNECTORS_ACCESS_CHANGED, service=name)
                running.reconfigure_access(after)
                continue
            if running is not None:
                log(CONNECTORS_REPLACE, service=name, enabled=after.enabled)
                yield running.disownServiceParent()
            if after.enabled:
                only = replace(ConnectorsConfig(), **{name: after})
                for connector in self._make(only):
                    connector.setServiceParent(self)
        self.config = new


class _Webhooks:
    def __init__(self, connectors: ConnectorsService) -> None:
        self._connectors = connectors

    def get(self, name: str) -> Callable[[Any], Any] | None:
        connector = self._connectors.namedServices.get(name)
        return getattr(connector, "webhook", None)


class ChannelRoutes:
    """
    The outbox's deliverer per channel: the fixed ones (webchat's hub), else
    the connector of that name, looked up at each delivery so a connector
    replaced by a reload is used at once.
    """

    def __init__(self, fixed: Mapping[str, Callable[[Any], Any]], connectors: ConnectorsService) -> None:
        self._fixed = dict(fixed)
        self._connectors = connectors

    def get(self, channel: str) -> Callable[[Any], Any] | None:
        return self._fixed.get(channel) or self._connectors.deliverer(channel)

    def deliverable(self) -> list[str]:
        """The channels this instance can deliver now (a connector another instance holds is not one)."""
        return sorted({*self._fixed, *(name for name in self._connectors.namedServices if self.get(name) is not None)})
