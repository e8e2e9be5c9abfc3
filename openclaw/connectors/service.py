"""
The connectors' parent service.  Connectors start in the order configured and
stop in reverse; their health feeds ``/health``'s ``connections``.

With several instances on one Redis, a connector that keeps a connection of
its own to its platform (Telegram's long poll, Discord's and Slack's
sockets) runs only on the instance holding its account's lease
(``connector:<platform>:<account>``); elsewhere it is on standby and sends
nothing.  Webhook and send-only connectors (WhatsApp, Telegram in webhook
mode, SMTP) run everywhere.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import replace
from typing import Any, Callable, Mapping

from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from openclaw import metrics
from openclaw.cluster import connector_lease
from openclaw.cluster.gate import Gated
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


#: Platforms whose connector holds a connection of its own: one instance at a time per account.
LEASED = ("telegram", "discord", "slack")
STANDBY = "standby"


def account_of(connector: Any) -> str:
    """The account a connector serves, named without its secret: 12 hex of its credential's sha256."""
    secrets = connector.secrets()
    return hashlib.sha256(secrets[0].encode()).hexdigest()[:12] if secrets else "default"


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
    :param cluster: an ``ICluster``: the ``LEASED`` connectors run only
        while it holds their account's lease (none: always).
    """

    def __init__(self, runtime: Any, make: Callable[[ConnectorsConfig], list[Any]], cluster: Any = None) -> None:
        super().__init__(runtime)
        self._make = make
        self.cluster = cluster
        self.config: ConnectorsConfig | None = None
        #: Platform webhooks by name, looked up per request (a reload may replace them).
        self.webhooks = _Webhooks(self)

    def build(self, config: ConnectorsConfig) -> None:
        """Add the connectors ``config`` enables (tree construction)."""
        self.config = config
        for connector in self._make(config):
            self._gated(connector).setServiceParent(self)

    def _gated(self, connector: Any) -> Any:
        webhook = getattr(connector.config, "mode", "") == "webhook"  # Telegram's: any instance takes the POSTs
        if self.cluster is None or connector.name not in LEASED or webhook:
            return connector
        return Gated(connector, self.cluster, connector_lease(connector.name, account_of(connector)),
                     standby=lambda: _no_gauge(connector.name))

    status_key = "connectors"

    def health(self) -> dict[str, dict[str, Any]]:
        """Each connector's health detail, by name; ``standby`` where another instance holds it."""
        return {c.name: c.health() if not _standby(c) else {
                    "connected": False, "state": STANDBY, "lease": c.lease, "last_receive": None,
                    "last_error": None, "reconnects": c.reconnects}
                for c in self if IConnector.providedBy(c)}

    status = health

    def problems(self) -> list[str]:
        return [f"connector {name} is {detail.get('state', 'down')}"
                for name, detail in self.health().items()
                if not detail.get("connected") and detail.get("state") != STANDBY]

    def deliverer(self, channel: str) -> Callable[[Any], Any] | None:
        """The connector's ``deliver``; ``None`` when there is none, or another instance holds it."""
        connector = self.namedServices.get(channel)
        return connector.deliver if connector is not None and not _standby(connector) else None

    def standby(self, channel: str) -> bool:
        """Whether ``channel``'s connector runs on another instance (its replies are sent there)."""
        connector = self.namedServices.get(channel)
        return connector is not None and _standby(connector)

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
                    self._gated(connector).setServiceParent(self)
        self.config = new


def _no_gauge(name: str) -> None:
    """On standby ``openclaw_connector_up`` is absent, not 0: another instance holds the connection."""
    try:
        metrics.connector_up.remove(name)
    except KeyError:
        pass


def _standby(connector: Any) -> bool:
    return isinstance(connector, Gated) and not connector.active


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
        found = self._fixed.get(channel) or self._connectors.deliverer(channel)
        if found is None and self._connectors.standby(channel):
            return _not_here  # the holder sends it; the row stays pending here
        return found

    def deliverable(self) -> list[str]:
        """The channels this instance can deliver now (a connector another instance holds is not one)."""
        held = (name for name in self._connectors.namedServices if self._connectors.deliverer(name) is not None)
        return sorted({*self._fixed, *held})


def _not_here(item: Any) -> bool:
    """Not delivered and no error: the outbox leaves the row pending."""
    return False
