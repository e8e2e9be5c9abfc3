"""
A service that listens on a configured endpoint and can stop listening on
its own, before it stops (the gateway does so the moment a drain begins).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort

from openclaw.eliotutil import log
from openclaw.errors import StartupError


#: Endpoint types whose strports description takes ``backlog=``.
_BACKLOG_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix"})


class ListenError(StartupError):
    """A port could not be bound; ``str()`` names the config key."""


def with_backlog(description: str, backlog: int) -> str:
    """
    ``description`` with a listen queue of ``backlog`` (Twisted's default is
    50, which a burst of connects overflows); a ``backlog=`` already in the
    description, and endpoint types without one, are left as they are.
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in _BACKLOG_TYPES or "backlog=" in description:
        return description
    return f"{description}:backlog={backlog}"


class ListeningService(Service):
    """
    Binds in ``privilegedStartService`` (or ``startService``) and raises a
    one-line ``ListenError`` there, so a busy port stops the start instead of
    leaving a daemon that is up but unreachable.
    """

    def __init__(self, reactor: Any, description: str, factory: Any, config_key: str, backlog: int = 511) -> None:
        self._reactor = reactor
        self.description = description
        self.backlog = backlog
        self.factory = factory
        self.config_key = config_key
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        Service.startService(self)
        if self.port is None:
            self._listen()

    def _listen(self) -> None:
        results: list[Any] = []
        endpoint = serverFromString(self._reactor, with_backlog(self.description, self.backlog))
        endpoint.listen(self.factory).addBoth(results.append)
        if not results:
            raise ListenError(f"{self.config_key}: {self.description}: listening did not complete at start")
        if not IListeningPort.providedBy(results[0]):
            raise ListenError(f"{self.config_key}: cannot listen on {self.description}: {results[0].value}")
        self.port = results[0]
        log("openclaw:listen", address=str(self.port.getHost()), key=self.config_key)

    def stop_listening(self) -> Deferred:
        """Close the listening socket; established connections stay."""
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return port.stopListening()

    def stopService(self) -> Deferred:
        Service.stopService(self)
        return self.stop_listening()
