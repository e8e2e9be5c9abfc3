"""
``Facts`` from the running daemon: what the rules brain and the
``get_status`` tool can say about it.  Checks and reports come from the
proactive engine through the runtime.
"""

from __future__ import annotations

from typing import Any

from openclaw import health
from openclaw.runtime import Runtime
from openclaw.status import TreeStatus

# Reading this process's memory costs a file read; /status may be asked often.
MEMORY_FRESH_FOR = 1.0


class RuntimeFacts:
    """Reads the runtime; every answer is computed when asked."""

    def __init__(self, runtime: Runtime, tree: TreeStatus) -> None:
        self.runtime = runtime
        self.tree = tree
        self._memory: tuple[float, dict[str, Any]] | None = None

    def _current_memory(self) -> dict[str, Any]:
        now = self.runtime.clock.seconds()
        if self._memory is None or now - self._memory[0] >= MEMORY_FRESH_FOR:
            self._memory = (now, health.memory())
        return self._memory[1]

    def health_summary(self) -> str:
        code, body = health.report(self.runtime, self._current_memory(), self.tree)
        down = [name for name, up in body["connections"].items() if not up]
        lines = [
            f"status: {body['status']}, up {body['uptime']:.0f}s, "
            f"{body['memory']['rss_bytes'] / 2**20:.0f} MiB RSS, {body['sessions']} sessions",
        ]
        if down:
            lines.append(f"connectors down: {', '.join(sorted(down))}")
        return "\n".join(lines)

    def sessions(self) -> list[str]:
        return sorted(self.runtime.sessions.snapshot())

    def heartbeat(self) -> dict:
        status = health.status(self.runtime, self.tree)
        return {"last": status["last_heartbeat"], "next": status["next_heartbeat"]}

    def checks(self) -> str:
        states = list((self.tree.section("checks") or {}).values())
        if not states:
            return "No checks are configured (see `checks:` in the config)."
        from openclaw.proactive.checks import format_states

        return format_states(states, self.runtime.clock.seconds())

    def report(self) -> str:
        reports = self.tree.service("reports")
        latest = reports.get() if reports is not None else None
        if latest is None:
            return f"{self.health_summary()}\nNo morning report has been written yet."
        return latest
