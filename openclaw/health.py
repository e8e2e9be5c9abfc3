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


def report(runtime: Runtime, mem: dict[str, int]) -> tuple[int, dict[str, Any]]:
    """
    :return: ``(http_status, body)``: 200 while running with every connector
        connected and the heartbeat on time; 503 while starting, draining,
        with a connector down or the heartbeat overdue (the dead-man signal).
    """
    connectors = runtime.connectors()
    connections = {name: bool(detail.get("connected")) for name, detail in connectors.items()}
    down = sorted(name for name, up in connections.items() if not up)
    overdue = runtime.heartbeat_overdue()
    mail = runtime.mail()
    if runtime.phase != RUNNING:
        status = runtime.phase
    elif down or overdue or any(m.get("state") == "failed" for m in mail.values()):
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "uptime": round(runtime.uptime(), 3),
        "timestamp": iso(runtime.clock.seconds()),
        "connections": connections,
        "connectors": connectors,
        "memory": mem,
        "services": dict(runtime.services),
        "last_heartbeat": iso(runtime.last_heartbeat),
        "heartbeat": {"overdue": overdue, "next": iso(runtime.next_heartbeat())},
        "checks": {c["name"]: c for c in runtime.checks()},
        "mail": mail,
        "sessions": len(runtime.sessions),
        "gateway": runtime.gateway(),
        "outbox": dict(runtime.outbox),
        "limits": {"nofile_soft": runtime.nofile[0], "nofile_hard": runtime.nofile[1]} if runtime.nofile else None,
        "config": config_status(runtime),
        "config_digest": runtime.config_digest,
    }
    return (200 if status == "ok" else 503), body


def reload_json(outcome: dict[str, Any] | None) -> dict[str, Any] | None:
    """A reload's outcome with its time in ISO 8601."""
    return None if outcome is None else {**outcome, "at": iso(outcome["at"])}


def config_status(runtime: Runtime) -> dict[str, Any]:
    """The config in use: its file, digest and the last reload's outcome."""
    return {"path": runtime.config_path, "digest": runtime.config_digest,
            "last_reload": reload_json(runtime.last_reload)}


def status(runtime: Runtime) -> dict[str, Any]:
    """The gateway's ``status`` payload: services, sessions, heartbeat."""
    return {
        "phase": runtime.phase,
        "uptime": round(runtime.uptime(), 3),
        "services": dict(runtime.services),
        "sessions": runtime.sessions.snapshot(),
        "last_heartbeat": iso(runtime.last_heartbeat),
        "next_heartbeat": iso(runtime.next_heartbeat()),
        "config": config_status(runtime),
    }
