"""
``<home>/data/gateway-state.json``: sessions, last heartbeat and a digest of
the config, so a restart picks up where the daemon left off.

Writes are atomic (temp file, fsync, rename, fsync of the directory); a file
that cannot be read back is moved aside with a warning, never a crash.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.application.service import Service

from openclaw import metrics
from openclaw.eliotutil import begin, log
from openclaw.periodic import PeriodicService
from openclaw.runtime import Runtime

STATE_VERSION = 1


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_state(path: str, now: float) -> tuple[dict[str, Any] | None, str | None]:
    """
    :return: ``(state, None)``, ``(None, None)`` when there is no file, or
        ``(None, problem)`` after moving an unreadable file aside.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        problem = f"unreadable ({e.strerror})"
    else:
        try:
            state = json.loads(raw)
            if isinstance(state, dict) and state.get("version") == STATE_VERSION:
                return state, None
            problem = "not an openclaw state file of a known version"
        except ValueError as e:
            problem = f"corrupt JSON ({e})"
    aside = f"{path}.corrupt.{int(now)}"
    try:
        os.replace(path, aside)
    except OSError:
        aside = None
    return None, f"{problem}; moved aside to {aside}" if aside else problem


class StateService(Service):
    """Restores state at start; saves it at stop and every ``save_every`` (``0``: only at stop)."""

    def __init__(self, runtime: Runtime, path: str, save_every: float) -> None:
        self.runtime = runtime
        self.path = path
        self.loop = PeriodicService(runtime.clock, save_every, self.save, name="state")

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "saved_at": self.runtime.clock.seconds(),
            "config_digest": self.runtime.config_digest,
            "last_heartbeat": self.runtime.last_heartbeat,
            "sessions": self.runtime.sessions.snapshot(),
        }

    def startService(self) -> None:
        Service.startService(self)
        self.restore()
        self.loop.startService()

    def restore(self) -> None:
        with begin("openclaw:state:restore", path=self.path) as action:
            state, problem = read_state(self.path, self.runtime.clock.seconds())
            if problem:
                log("openclaw:state:corrupt", level="warn", path=self.path, problem=problem)
            if state is None:
                action.add_success_fields(restored_sessions=0)
                return
            restored = self.runtime.sessions.restore(state.get("sessions"))
            beat = state.get("last_heartbeat")
            if isinstance(beat, (int, float)):
                self.runtime.heartbeat(float(beat))
            changed = state.get("config_digest") != self.runtime.config_digest
            action.add_success_fields(restored_sessions=restored, config_changed=changed)

    def save(self) -> None:
        """Write the state file; a failure is logged and counted, never raised."""
        try:
            with begin("openclaw:state:save", level="debug", path=self.path):
                write_atomic(self.path, json.dumps(self.snapshot(), indent=1).encode())
        except OSError:
            metrics.state_saves.labels("error").inc()
        else:
            metrics.state_saves.labels("ok").inc()

    def stopService(self) -> None:
        self.loop.stopService()  # saving is synchronous: nothing can be in progress
        self.save()
        Service.stopService(self)
