"""What the rules brain can tell about the daemon: checks, reports, health."""

from __future__ import annotations

from twisted.internet.task import Clock

from openclaw import health
from openclaw.facts import RuntimeFacts
from openclaw.runtime import Runtime


def test_checks_and_reports_come_from_the_engine() -> None:
    runtime = Runtime(Clock())
    facts = RuntimeFacts(runtime)
    assert facts.checks().startswith("No checks are configured")
    assert "No morning report has been written yet." in facts.report()
    runtime.checks = lambda: [{"name": "db", "type": "tcp", "ok": False, "since": 0.0, "alerting": True,
                               "flapping": False, "last_latency": 0.5, "last_detail": "refused"}]
    runtime.report = lambda: "# Report for 2026-11-23"
    assert facts.checks().split()[:3] == ["db", "tcp", "DOWN"]
    assert facts.report() == "# Report for 2026-11-23"


def test_memory_is_read_at_most_once_a_second(monkeypatch) -> None:
    reads = []
    monkeypatch.setattr(health, "memory", lambda: reads.append(1) or {"rss_bytes": 2**20, "peak_rss_bytes": 0,
                                                                       "python_allocated_blocks": 0})
    clock = Clock()
    facts = RuntimeFacts(Runtime(clock))
    facts.health_summary()
    facts.health_summary()
    clock.advance(1)
    assert "1 MiB RSS" in facts.health_summary() and len(reads) == 2
