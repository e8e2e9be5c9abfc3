"""
The health report shared by ``GET /health`` and the gateway's ``health``
method.  Building it is pure apart from reading this process's memory.
"""

from __future__ import annotations

import resource
import sys
from datetime import datetime, timezone
from typing import Any

from openclaw.runtime import RUNNING, Runtime


def iso(when: float | None) -> str | None:
    """Unix time as ISO 8601 UTC (``...Z``), or None."""
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat().replace("+00:00", "Z")


def memory() -> dict[str, int]:
    """RSS and peak RSS in bytes, and the Python heap's allocated blocks."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        rss = peak
    return {"rss_bytes": rss, "peak_rss_bytes": peak, "python_allocated_blocks": sys.getallocatedblocks()}


def report(runtime: Runtime, mem: dict[str, int], tree: Any) -> tuple[int, dict[str, Any]]:
    """
    :param tree: the services' own reports (``status.TreeStatus``).
    :return: ``(http_status, body)``: 200 while running with nothing wrong;
        503 while starting or draining, or "degraded" while a service names
        a problem (a connector down, the heartbeat overdue, the store
        failing, a mailbox failed): ``problems`` lists them.
    """
    sections = tree.sections()
    problems = tree.problems()
    connectors = sections.get("connectors", {})
    if runtime.phase != RUNNING:
        status = runtime.phase
    elif problems:
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "problems": problems,
        "uptime": round(runtime.uptime(), 3),
        "timestamp": iso(runtime.clock.seconds()),
        "connections": {name: bool(detail.get("connected")) for name, detail in connectors.items()},
        "memory": mem,
        "services": dict(runtime.services),
        "last_heartbeat": iso(runtime.last_heartbeat),
        "sessions": len(runtime.sessions),
        "limits": {"nofile_soft": runtime.nofile[0], "nofile_hard": runtime.nofile[1]} if runtime.nofile else None,
        "config": config_status(runtime),
        "config_digest": runtime.config_digest,
        # Each service's own part: connectors, heartbeat, checks, mail, gateway, outbox, store.
        **{"connectors": {}, "checks": {}, "mail": {}, **sections},
    }
    return (200 if status == "ok" else 503), body


def reload_json(outcome: dict[str, Any] | None) -> dict[str, Any] | None:
    """A reload's outcome with its time in ISO 8601."""
    return None if outcome is None else {**outcome, "at": iso(outcome["at"])}


def config_status(runtime: Runtime) -> dict[str, Any]:
    """The config in use: its file, digest and the last reload's outcome."""
    return {"path": runtime.config_path, "digest": runtime.config_digest,
            "last_reload": reload_json(runtime.last_reload)}


def status(runtime: Runtime, tree: Any) -> dict[str, Any]:
    """The gateway's ``status`` payload: services, sessions, heartbeat."""
    return {
        "phase": runtime.phase,
        "uptime": round(runtime.uptime(), 3),
        "services": dict(runtime.services),
        "sessions": runtime.sessions.snapshot(),
        "last_heartbeat": iso(runtime.last_heartbeat),
        "next_heartbeat": (tree.section("heartbeat") or {}).get("next"),
        "config": config_status(runtime),
    }
