"""
The system snapshot a heartbeat shows the brain: the local time, the
daemon's own state, the host's gauges, check results and due cron jobs.

Every source is injected, so a test can fix what the brain sees; the host
gauges come from psutil by default.  ``digest`` names the state a verdict
was based on: two beats that saw the same connectors, checks, outbox,
errors and jobs share a digest, whatever the clock and the jittery host
gauges said.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, tzinfo
from typing import Any, Callable, Iterable

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred

from openclaw.proactive.schedule import zone
from openclaw.runtime import Runtime
from openclaw.status import NO_SERVICES, TreeStatus

# Left out of the digest: they change on every beat without meaning anything.
VOLATILE = ("now", "uptime", "host")


def local_time(when: float, tz: tzinfo) -> datetime:
    """``when`` (Unix seconds) as an aware datetime in ``tz``."""
    return datetime.fromtimestamp(when, tz)


def mount_of(path: str) -> str:
    """The mount point holding ``path``."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def host_stats(mounts: Iterable[str]) -> dict[str, Any]:
    """CPU (since the previous call), load, memory and disk use per mount, from psutil."""
    import psutil

    disks = {}
    for mount in mounts:
        try:
            usage = psutil.disk_usage(mount)
        except OSError as e:
            disks[mount] = {"error": e.strerror or type(e).__name__}
            continue
        disks[mount] = {"used_percent": usage.percent, "free_gb": round(usage.free / 1e9, 1)}
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "memory_percent": psutil.virtual_memory().percent,
        "disks": disks,
    }


def connector_states(health: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per connector only what a verdict needs: up or not, and the last error."""
    return {name: {"connected": bool(h.get("connected")), "last_error": h.get("last_error")}
            for name, h in sorted(health.items())}


def check_states(states: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    Per check only what a verdict needs: ``name``, ``ok`` (``None`` before the
    first probe), ``detail``, and whether it is alerting or flapping.  Probe
    latencies and times are left out: they would change every digest.
    """
    keep = ("name", "ok", "detail", "alerting", "flapping")
    result = []
    for state in states:
        entry = {k: state[k] for k in keep if k in state}
        entry.setdefault("detail", state.get("last_detail"))
        result.append(entry)
    return result


def digest(snapshot: dict[str, Any]) -> str:
    """A short hash of the snapshot's state (``VOLATILE`` keys left out), canonical JSON."""
    stable = {k: v for k, v in snapshot.items() if k not in VOLATILE}
    text = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Snapshotter:
    """
    Builds snapshots from the runtime, what the services report (``tree``)
    and injected sources.

    :param recent_errors: how many errors were logged in the last hour.
    :param checks: the latest check results, dicts with ``name``, ``ok``
        and ``detail`` or ``last_detail`` (``ChecksService.states``), or a
        Deferred of them.
    :param cron_due: the cron jobs due now or overdue (or a Deferred).
    :param host: the host gauges for a list of mounts (``host_stats``).
    """

    def __init__(
        self, runtime: Runtime, home: str, timezone: str = "", tree: TreeStatus = NO_SERVICES,
        recent_errors: Callable[[], int] = lambda: 0,
        checks: Callable[[], Any] = list,
        cron_due: Callable[[], Any] = list,
        host: Callable[[Iterable[str]], dict[str, Any]] = host_stats,
    ) -> None:
        self.runtime = runtime
        self.tree = tree
        self.timezone = timezone
        self.tz = zone(timezone)
        self.mounts = sorted({"/", mount_of(home)})
        self.recent_errors = recent_errors
        self.checks = checks
        self.cron_due = cron_due
        self.host = host

    def take(self) -> Deferred:
        """A Deferred firing with the snapshot dict (JSON-ready)."""
        d = gatherResults([maybeDeferred(self.checks), maybeDeferred(self.cron_due)], consumeErrors=True)
        d.addCallback(lambda results: self.build(*results))
        return d

    def build(self, checks: list[dict], cron_due: list) -> dict[str, Any]:
        runtime = self.runtime
        now = runtime.clock.seconds()
        local = local_time(now, self.tz)
        active_since = now - 3600
        return {
            "now": {
                "time": local.isoformat(timespec="seconds"),
                "timezone": self.timezone or local.tzname(),
                "weekday": local.strftime("%A"),
            },
            "uptime": round(runtime.uptime()),
            "host": self.host(self.mounts),
            "connectors": connector_states(self.tree.section("connectors", {})),
            "sessions": {
                "known": len(runtime.sessions),
                "active_last_hour": sum(1 for s in runtime.sessions.snapshot().values()
                                        if s["last_active"] >= active_since),
            },
            "outbox": {key: (self.tree.section("outbox") or {}).get(key, 0) for key in ("pending", "failed")},
            "errors_last_hour": self.recent_errors(),
            "checks": check_states(checks),
            "cron_due": list(cron_due),
        }
