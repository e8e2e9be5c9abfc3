"""
The in-memory registry of sessions the daemon has seen, with first-seen and
last-active times, for ``status`` and gateway-state.json.  The store keeps the
durable copy; ``openclaw_active_sessions`` counts live lanes.
"""

from __future__ import annotations

from typing import Any


class Sessions:
    """Known sessions by id (``webchat:<client>``, ``telegram:<chat>``, ...)."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, Any]] = {}

    def touch(self, session_id: str, channel: str, now: float, peer: str | None = None) -> None:
        """Record activity on a session, creating it on first sight."""
        entry = self._sessions.get(session_id)
        if entry is None:
            entry = {"channel": channel, "peer": peer, "first_seen": now, "last_active": now}
            self._sessions[session_id] = entry
        entry["last_active"] = now

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A JSON-ready copy, for state files and ``status``."""
        return {k: dict(v) for k, v in self._sessions.items()}

    def restore(self, saved: Any) -> int:
        """
        Re-create sessions from a saved snapshot, skipping malformed entries.

        :return: how many sessions were restored.
        """
        count = 0
        if isinstance(saved, dict):
            for session_id, entry in saved.items():
                if (
                    isinstance(session_id, str)
                    and isinstance(entry, dict)
                    and isinstance(entry.get("channel"), str)
                    and isinstance(entry.get("first_seen"), (int, float))
                    and isinstance(entry.get("last_active"), (int, float))
                ):
                    self._sessions[session_id] = {
                        "channel": entry["channel"],
                        "peer": entry.get("peer") if isinstance(entry.get("peer"), str) else None,
                        "first_seen": float(entry["first_seen"]),
                        "last_active": float(entry["last_active"]),
                    }
                    count += 1
        return count

    def __len__(self) -> int:
        return len(self._sessions)
