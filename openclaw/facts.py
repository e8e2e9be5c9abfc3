"""
``Facts`` from the running daemon: what the rules brain and the
``get_status`` tool can say about it.  Checks and reports are hooks the
proactive engine fills in.
"""

from __future__ import annotations

from openclaw import health
from openclaw.runtime import Runtime


class RuntimeFacts:
    """Reads the runtime; every answer is computed when asked."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def health_summary(self) -> str:
        code, body = health.report(self.runtime, health.memory())
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
        status = health.status(self.runtime)
        return {"last": status["last_heartbeat"], "next": status["next_heartbeat"]}

    def checks(self) -> str:
        return "No checks are configured yet."

    def report(self) -> str:
        return f"{self.health_summary()}\nNo report sections are configured yet."
