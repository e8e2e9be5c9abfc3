"""
``<home>/daemon.json``: where the running daemon actually listens.

Written once the daemon is ready (the ports are bound, so ``tcp:0`` shows its
real port), removed at a clean exit.  Every CLI command reads it first, so
``openclaw status``/``send``/``checks`` find a daemon started on other ports
with no flags.  A file left by a killed daemon is ignored: its PID is dead.
"""

from __future__ import annotations

import json
import os
from typing import Any

from openclaw.system.homelock import alive

RUNFILE_NAME = "daemon.json"


def runfile_path(home: str) -> str:
    return os.path.join(home, RUNFILE_NAME)


def address_url(scheme: str, host: str, port: int) -> str:
    """``ws://127.0.0.1:18789/`` from a bound address (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"


def write(home: str, facts: dict[str, Any]) -> None:
    """Atomically replace the runtime file with ``facts`` (mode 0600)."""
    path = runfile_path(home)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), **facts}, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def remove(home: str) -> None:
    """Remove the runtime file if it is ours."""
    path = runfile_path(home)
    if (read(home) or {}).get("pid") == os.getpid():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def read(home: str) -> dict[str, Any] | None:
    """The running daemon's facts, or ``None`` when no live daemon wrote them."""
    try:
        with open(runfile_path(home), encoding="utf-8") as f:
            facts = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or not isinstance(facts.get("pid"), int):
        return None
    if facts["pid"] != os.getpid() and not alive(facts["pid"]):
        return None
    return facts
