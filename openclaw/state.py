"""
``<home>/data/gateway-state.json``: sessions, last heartbeat and a digest of
the config, so a restart picks up where the daemon left off.

Writes are atomic (temp file, fsync, rename, fsync of the directory); a file
that cannot be read back, or does not validate in every field (``problem``),
is moved aside with a warning, never a crash: the file is the daemon's own,
so anything unexpected in it means it was damaged or written by something else.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import orjson
from twisted.application.service import Service
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import begin, log
from openclaw.interfaces import IReconfigurable
from openclaw.periodic import PeriodicService
from openclaw.runtime import Runtime

STATE_VERSION = 1

MAX_STATE_BYTES = 64 * 1024 * 1024
"""A larger file is not read: at ~150 bytes a session that is over 400,000 sessions, not ours."""

_SESSION_KEYS = {"channel", "peer", "first_seen", "last_active"}


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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def problem(state: Any) -> str | None:
    """
    What is wrong with a decoded state file, or ``None`` when every field is
    what ``StateService.snapshot`` writes (the first problem found is named).
    """
    if not isinstance(state, dict):
        return "not a JSON object"
    if state.get("version") != STATE_VERSION:
        return "not an openclaw state file of a known version"
    unknown = set(state) - {"version", "saved_at", "config_digest", "last_heartbeat", "sessions"}
    if unknown:
        return f"unknown key {sorted(unknown)[0]!r}"
    if not _number(state.get("saved_at", 0)):
        return "saved_at is not a number"
    if not isinstance(state.get("config_digest", ""), (str, type(None))):
        return "config_digest is not a string"
    if state.get("last_heartbeat") is not None and not _number(state["last_heartbeat"]):
        return "last_heartbeat is not a number"
    sessions = state.get("sessions", {})
    if not isinstance(sessions, dict):
        return "sessions is not an object"
    for session_id, entry in sessions.items():
        where = f"sessions[{session_id[:40]!r}]"
        if not isinstance(entry, dict) or set(entry) - _SESSION_KEYS:
            return f"{where} is not a session"
        if not isinstance(entry.get("channel"), str) or not isinstance(entry.get("peer"), (str, type(None))):
            return f"{where}: channel or peer is not a string"
        if not (_number(entry.get("first_seen")) and _number(entry.get("last_active"))):
            return f"{where}: first_seen or last_active is not a number"
    return None


def read_state(path: str, now: float) -> tuple[dict[str, Any] | None, str | None]:
    """
    :return: ``(state, None)``, ``(None, None)`` when there is no file, or
        ``(None, problem)`` after moving aside a file that cannot be read,
        is larger than ``MAX_STATE_BYTES``, is not JSON (orjson: nesting
        deeper than 1,024 is an error, not a RecursionError) or does not
        validate (``problem``).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        found = f"unreadable ({e.strerror})"
    else:
        try:
            if len(raw) > MAX_STATE_BYTES:
                found = f"larger than {MAX_STATE_BYTES} bytes"
            elif (found := problem(state := orjson.loads(raw))) is None:
                return state, None
        except orjson.JSONDecodeError as e:
            found = f"corrupt JSON ({e})"
    aside = f"{path}.corrupt.{int(now)}"
    try:
        os.replace(path, aside)
    except OSError:
        aside = None
    return None, f"{found}; moved aside to {aside}" if aside else found


@implementer(IReconfigurable)
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

    @property
    def save_every(self) -> float:
        """The saving interval (the loop's)."""
        return self.loop.interval

    def reconfigure(self, config: Any) -> None:
        """A new ``state.save_every``: the next save is that long after the last one (``0``: only at stop)."""
        if config.state.save_every != self.save_every:
            self.loop.set_interval(config.state.save_every)

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
