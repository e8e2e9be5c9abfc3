"""What the rules brain can tell about the daemon: checks, reports, health."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.task import Clock

from openclaw import health
from openclaw.facts import RuntimeFacts
from openclaw.runtime import Runtime
from openclaw.status import NO_SERVICES, TreeStatus
from tests.fakes import FixedStatus


class Reports(Service):
    def __init__(self, latest: str | None) -> None:
        self.setName("reports")
        self.latest = latest

    def get(self, day: str | None = None) -> str | None:
        return self.latest


def test_checks_and_reports_come_from_the_services_themselves() -> None:
    runtime = Runtime(Clock())
    checks: dict = {}
    reports = Reports(None)
    facts = RuntimeFacts(runtime, TreeStatus([FixedStatus("checks", lambda: checks), reports]))
    assert facts.checks().startswith("No checks are configured")
    assert "No morning report has been written yet." in facts.report()
    checks["db"] = {"name": "db", "type": "tcp", "ok": False, "since": 0.0, "alerting": True,
                    "flapping": False, "last_latency": 0.5, "last_detail": "refused"}
    reports.latest = "# Report for 2026-11-23"
    assert facts.checks().split()[:3] == ["db", "tcp", "DOWN"]
    assert facts.report() == "# Report for 2026-11-23"


def test_memory_is_read_at_most_once_a_second(monkeypatch) -> None:
    reads = []
    monkeypatch.setattr(health, "memory", lambda: reads.append(1) or {"rss_bytes": 2**20, "peak_rss_bytes": 0,
                                                                       "python_allocated_blocks": 0})
    clock = Clock()
    facts = RuntimeFacts(Runtime(clock), NO_SERVICES)
    facts.health_summary()
    facts.health_summary()
    clock.advance(1)
    assert "1 MiB RSS" in facts.health_summary() and len(reads) == 2
