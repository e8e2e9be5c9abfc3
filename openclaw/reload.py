"""
What a reload changes, decided without I/O.

``plan_reload(old, new)`` compares two validated configs section by section:
sections that differ are handed to the services (each ``IReconfigurable``
child picks its own from the whole config and skips what did not change,
as Buildbot's ``reconfigServiceWithSibling`` does); settings that cannot
change in a running process keep their old value and are reported as
needing a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from openclaw.config import Config

#: (section, key) that a running daemon cannot change: its sockets and store
#: were opened with them.  The rest of a reload is still applied.
RESTART_KEYS = (("gateway", "listen"), ("gateway", "backlog"), ("web", "listen"), ("web", "backlog"),
                ("store", "url"), ("store", "prefix"), ("cluster", "lease_ttl"), ("cluster", "instance_ttl"))


@dataclass(frozen=True)
class ReloadPlan:
    #: The config to apply: ``new`` with the restart-only keys kept as they run.
    applied: Config
    #: Sections whose effective values differ (``"connectors"``, ``"checks"`` ...).
    changed: tuple[str, ...]
    #: ``section.key`` changed in the file that only a restart applies.
    restart_needed: tuple[str, ...]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    applied = new
    restart: list[str] = []
    for section, key in RESTART_KEYS:
        running, wanted = getattr(getattr(old, section), key), getattr(getattr(new, section), key)
        if running != wanted:
            restart.append(f"{section}.{key}")
            applied = replace(applied, **{section: replace(getattr(applied, section), **{key: running})})
    if new.mail and not old.mail:
        # The IMAP client is loaded only by a daemon started with a mailbox.
        restart.append("mail")
        applied = replace(applied, mail=old.mail)
    changed = tuple(f.name for f in fields(Config) if getattr(old, f.name) != getattr(applied, f.name))
    return ReloadPlan(applied, changed, tuple(restart))


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did, for the log, ``/health`` and ``openclaw reload``."""

    #: ``applied``, ``rejected`` (bad config or shutting down: nothing changed) or ``unchanged``.
    result: str
    at: float
    reason: str = ""
    changed: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = ()
    #: Services whose reconfiguration failed (they keep running as they were).
    failed: tuple[str, ...] = ()
    digest: str = ""

    def as_json(self) -> dict:
        return {"result": self.result, "at": self.at, "reason": self.reason, "changed": list(self.changed),
                "restart_needed": list(self.restart_needed), "failed": list(self.failed), "digest": self.digest}
