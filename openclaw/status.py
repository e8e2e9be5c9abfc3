"""
The daemon's state as its services report it (``IStatusSource``): what
``/health``, ``/readyz``, the gateway's ``health``/``status``, the
heartbeat's snapshot and the rules brain read, straight from the services.
"""

from __future__ import annotations

from typing import Any, Iterable

from openclaw.interfaces import IStatusSource


class StatusSource:
    """``IStatusSource``'s defaults: nothing wrong, never a reason to withdraw readiness."""

    status_key = ""

    def problems(self) -> list[str]:
        return []

    def blocks_readiness(self) -> bool:
        return False


class TreeStatus:
    """Reads every ``IStatusSource`` among ``services`` (a MultiService's children) when asked."""

    def __init__(self, services: Iterable[Any]) -> None:
        self._services = services

    def _sources(self) -> list[Any]:
        return [s for s in self._services if IStatusSource.providedBy(s)]

    def sections(self) -> dict[str, Any]:
        """Each source's part of ``/health``, by its ``status_key``."""
        return {source.status_key: source.status() for source in self._sources()}

    def section(self, key: str, default: Any = None) -> Any:
        for source in self._sources():
            if source.status_key == key:
                return source.status()
        return default

    def problems(self) -> list[str]:
        return [problem for source in self._sources() for problem in source.problems()]

    def ready(self) -> bool:
        return not any(source.blocks_readiness() for source in self._sources())

    def service(self, name: str) -> Any:
        """A service of the tree by name (the reports, for the rules brain), or ``None``."""
        return next((s for s in self._services if getattr(s, "name", None) == name), None)


#: What a part built alone (a test's web service, a snapshot) reports: nothing.
NO_SERVICES = TreeStatus(())
