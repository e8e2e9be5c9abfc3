"""
The connectors' parent service.  Connectors start in the order configured and
stop in reverse; their health feeds ``/health``'s ``connections``.
"""

from __future__ import annotations

from typing import Any

from openclaw.interfaces import IConnector
from openclaw.ordered import OrderedMultiService


class ConnectorsService(OrderedMultiService):
    """Holds the enabled connectors (none until chat platforms are configured)."""


    def health(self) -> dict[str, dict[str, Any]]:
        """Each connector's health detail, by name."""
        return {c.name: c.health() for c in self if IConnector.providedBy(c)}
