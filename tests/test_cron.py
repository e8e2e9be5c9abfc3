"""The cron service on a Clock: restarts, grace, failures, overlap, actions."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from openclaw.interfaces import IDrainable
from openclaw.metrics import REGISTRY
from openclaw.config.proactive import CronConfig
from openclaw.proactive.cron import CronService
from openclaw.store.sqlite import SQLiteStore


def at(*fields: int, tz: Any = timezone.utc) -> float:
    return datetime(*fields, tzinfo=tz).timestamp()


class MemoryStore:
    """The store methods cron uses; values go through JSON like a real store's."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.journal_rows: list[tuple[str, float, dict]] = []
        self.refuse_writes = False

    def get_state(self, key: str) -> Deferred:
        value = self.state.get(key)
        return succeed(None if value is None else json.loads(value))

    def set_state(self, key: str, value: Any) -> Deferred:
        if self.refuse_writes:
            return fail(OSError("disk full"))
        self.state[key] = json.dumps(value)
        return succeed(None)

    def append_journal(self, kind: str, timestamp: float, payload: Any) -> Deferred:
        self.journal_rows.append((kind, timestamp, json.loads(json.dumps(payload))))
        return succeed(None)

    def record(self, name: str) -> dict:
        return json.loads(self.state[f"cron:{name}"])

    def cron(self) -> list[dict]:
        return [payload for kind, _, payload in self.journal_rows if kind == "cron"]


class Notifier:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def notify(self, kind: str, source: str, message: str, dedupe_key: str, target: str = "") -> Deferred:
        self.sent.append((kind, source, message, dedupe_key, target))
        return succeed("telegram:1")


class Harness:
    """One store and clock shared by successive service instances (restarts)."""

    def __init__(self, start: float) -> None:
        self.clock = Clock()
        self.clock.advance(start)
        self.store = MemoryStore()
        self.notifier = Notifier()
        self.reports: list[date] = []
        self.beats: list[str] = []
        self.pending: list[Deferred] = []  # actions not finished yet
        self.mode = "ok"  # ok, fail, hang
        self.service: CronService | None = None

    def action(self, record: list, value: Any) -> Any:
        record.append(value)
        if self.mode == "fail":
            raise RuntimeError("the action broke")
        if self.mode == "hang":
            d: Deferred = Deferred()
            self.pending.append(d)
            return d
        return None

    def start(self, *jobs: CronConfig, tz: str = "UTC") -> CronService:
        self.service = CronService(
            self.clock, self.store, jobs, self.notifier,
            run_report=lambda day, target: self.action(self.reports, (day, target) if target else day),
            run_heartbeat=lambda instruction: self.action(self.beats, instruction), timezone=tz)
        self.service.startService()
        return self.service

    def restart(self, when: float, *jobs: CronConfig) -> CronService:
        assert self.service is not None
        self.service.stopService()
        self.advance_to(when)
        return self.start(*jobs)

    def advance_to(self, when: float) -> None:
        assert when >= self.clock.seconds()
        self.clock.advance(when - self.clock.seconds())


def runs(job: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("openclaw_cron_runs_total", {"job": job, "outcome": outcome}) or 0.0


def daily(name: str, action: str = "heartbeat", **kw: Any) -> CronConfig:
    return CronConfig(name=name, schedule="0 9 * * *", action=action, instruction="look around", **kw)


def test_the_first_boot_waits_for_the_next_due_time() -> None:
    h = Harness(at(2024, 5, 2, 9, 0))
    service = h.start(daily("first"))
    assert IDrainable.providedBy(service)
    assert h.beats == [] and h.store.record("first")["first_seen"] == at(2024, 5, 2, 9)
    assert service.states()[0]["next_due"] == at(2024, 5, 3, 9)
    h.advance_to(at(2024, 5, 3, 9))
    assert h.beats == ["look around"]
    assert h.store.cron() == [{"job": "first", "action": "heartbeat", "due": at(2024, 5, 3, 9), "outcome": "ok",
                               "error": None, "duration": 0.0}]
    record = h.store.record("first")
    assert (record["due"], record["outcome"], record["started"]) == (at(2024, 5, 3, 9), "ok", at(2024, 5, 3, 9))
    h.advance_to(at(2024, 5, 4, 9))
    assert len(h.beats) == 2


def test_the_record_is_written_before_the_action_starts() -> None:
    h = Harness(at(2024, 5, 2, 8))
    seen = []

    def report(day: date, target: str) -> None:
        seen.append((day, target, h.store.record("rep")["outcome"], h.store.record("rep")["due"]))

    h.start(daily("rep", action="report", target="telegram:7"))
    h.service.run_report = report
    h.advance_to(at(2024, 5, 2, 9))
    assert seen == [(date(2024, 5, 1), "telegram:7", "started", at(2024, 5, 2, 9))]


def test_a_restart_during_a_run_never_runs_that_due_time_again() -> None:
    h = Harness(at(2024, 5, 2, 8))
    job = daily("cut")
    h.start(job)
    h.mode = "hang"
    h.advance_to(at(2024, 5, 2, 9))
    assert h.beats == ["look around"] and h.store.record("cut")["outcome"] == "started"
    before = runs("cut", "interrupted")
    # The daemon dies mid-run (nothing finishes the action) and comes back within the grace.
    h.restart(at(2024, 5, 2, 9, 5), job)
    assert h.beats == ["look around"]
    assert h.store.record("cut")["outcome"] == "interrupted"
    assert [r["outcome"] for r in h.store.cron()] == ["interrupted"]
    assert runs("cut", "interrupted") == before + 1
    assert h.notifier.sent[-1][:2] == ("info", "cut") and "interrupted" in h.notifier.sent[-1][2]
    # Another restart changes nothing; the next day runs as usual.
    h.mode = "ok"
    h.restart(at(2024, 5, 2, 9, 6), job)
    assert h.beats == ["look around"] and len(h.store.cron()) == 1
    h.advance_to(at(2024, 5, 3, 9))
    assert h.beats == ["look around"] * 2


def test_a_run_missed_while_down_runs_once_within_the_grace() -> None:
    h = Harness(at(2024, 5, 1, 12))
    job = daily("late", grace=3600)
    h.start(job)
    h.restart(at(2024, 5, 2, 9, 40), job)  # down over 09:00, back 40 minutes later
    assert h.beats == ["look around"]
    assert h.store.record("late")["due"] == at(2024, 5, 2, 9)
    h.restart(at(2024, 5, 2, 9, 50), job)
    assert h.beats == ["look around"]
    assert [r["outcome"] for r in h.store.cron()] == ["ok"]


def test_a_run_missed_beyond_the_grace_is_recorded_not_run() -> None:
    h = Harness(at(2024, 5, 1, 12))
    job = daily("gone", grace=3600)
    h.start(job)
    before = runs("gone", "missed")
    service = h.restart(at(2024, 5, 4, 10, 30), job)  # three due times passed, the last 90 minutes ago
    assert h.beats == []
    assert h.store.cron() == [{"job": "gone", "action": "heartbeat", "due": at(2024, 5, 2, 9), "outcome": "missed",
                               "count": 3, "last": at(2024, 5, 4, 9), "more": False}]
    assert runs("gone", "missed") == before + 3
    assert [c.getTime() for c in h.clock.getDelayedCalls()] == [at(2024, 5, 5, 9)]
    assert service.states()[0]["next_due"] == at(2024, 5, 5, 9)
    h.restart(at(2024, 5, 4, 11), job)
    assert len(h.store.cron()) == 1  # recorded once, not at every start


def test_a_failed_run_is_recorded_and_told() -> None:
    h = Harness(at(2024, 5, 2, 8))
    h.start(daily("broken", target="telegram:7"))
    h.mode = "fail"
    before = runs("broken", "failed")
    h.advance_to(at(2024, 5, 2, 9))
    (row,) = h.store.cron()
    assert (row["outcome"], row["error"]) == ("failed", "the action broke")
    assert h.store.record("broken")["outcome"] == "failed"
    assert runs("broken", "failed") == before + 1
    assert h.notifier.sent == [("info", "broken", "Cron job broken failed: the action broke",
                                f"cron-failed:broken:{at(2024, 5, 2, 9):.0f}", "telegram:7")]
    h.mode = "ok"
    h.advance_to(at(2024, 5, 3, 9))  # the schedule goes on
    assert [r["outcome"] for r in h.store.cron()] == ["failed", "ok"]


def test_a_heartbeat_that_failed_is_a_failed_run() -> None:
    h = Harness(at(2024, 5, 2, 8))
    h.start(daily("beat"))
    h.service.run_heartbeat = lambda instruction: succeed({"verdict": "failed", "error": "model down"})
    h.advance_to(at(2024, 5, 2, 9))
    assert [(r["outcome"], r["error"]) for r in h.store.cron()] == [("failed", "model down")]
    h.service.run_heartbeat = lambda instruction: succeed({"verdict": "acted"})
    h.advance_to(at(2024, 5, 3, 9))
    assert h.store.cron()[-1]["outcome"] == "ok"


def test_no_action_runs_when_its_start_cannot_be_recorded() -> None:
    h = Harness(at(2024, 5, 2, 8))
    h.start(daily("nodisk"))
    h.store.refuse_writes = True
    h.advance_to(at(2024, 5, 2, 9))
    assert h.beats == []
    (row,) = h.store.cron()
    assert row["outcome"] == "failed" and "could not record the start: disk full" in row["error"]
    assert h.notifier.sent[0][1] == "nodisk"


def test_a_long_run_does_not_overlap_itself() -> None:
    h = Harness(at(2024, 5, 2, 8, 0, 30))
    h.start(CronConfig(name="slow", schedule="* * * * *", action="heartbeat", instruction="x"))
    h.mode = "hang"
    h.advance_to(at(2024, 5, 2, 8, 1))
    assert h.service.states()[0]["running"] is True
    h.advance_to(at(2024, 5, 2, 8, 2))
    h.advance_to(at(2024, 5, 2, 8, 3))
    assert h.beats == ["x"]
    assert [(r["outcome"], r["due"]) for r in h.store.cron()] == [
        ("skipped", at(2024, 5, 2, 8, 2)), ("skipped", at(2024, 5, 2, 8, 3))]
    h.mode = "ok"
    h.pending.pop().callback(None)
    assert h.store.cron()[-1]["outcome"] == "ok" and h.store.record("slow")["due"] == at(2024, 5, 2, 8, 1)
    h.advance_to(at(2024, 5, 2, 8, 4))
    assert h.beats == ["x", "x"]


def test_actions() -> None:
    berlin = "Europe/Berlin"
    h = Harness(at(2024, 5, 1, 22))
    h.start(
        CronConfig(name="morning", schedule="30 0 * * *", action="report"),
        CronConfig(name="remind", schedule="30 0 * * *", action="message", text="water the plants",
                   target="telegram:9", timezone="UTC"),
        tz=berlin)
    h.advance_to(at(2024, 5, 2, 0, 30, tz=ZoneInfo(berlin)))  # 22:30 UTC on May 1st
    assert h.reports == [date(2024, 5, 1)]
    h.advance_to(at(2024, 5, 2, 0, 30))
    due = at(2024, 5, 2, 0, 30)
    assert h.notifier.sent == [("info", "remind", "water the plants", f"cron:remind:{due:.0f}", "telegram:9")]
    assert [(s["name"], s["timezone"], s["outcome"]) for s in h.service.states()] == [
        ("morning", berlin, "ok"), ("remind", "UTC", "ok")]


def test_drain_waits_for_a_run_and_hurry_stops_waiting() -> None:
    h = Harness(at(2024, 5, 2, 8))
    service = h.start(daily("draining"))
    h.mode = "hang"
    h.advance_to(at(2024, 5, 2, 9))
    drained = service.drain()
    assert not drained.called and h.clock.getDelayedCalls() == []
    h.pending[0].callback(None)
    assert drained.called
    h.advance_to(at(2024, 5, 3, 9))
    assert len(h.beats) == 1  # no new runs once draining

    h2 = Harness(at(2024, 5, 2, 8))
    service = h2.start(daily("hurried"))
    h2.mode = "hang"
    h2.advance_to(at(2024, 5, 2, 9))
    drained = service.drain()
    service.hurry()
    assert drained.called


@pytest_twisted.inlineCallbacks
def test_records_survive_a_restart_in_a_sqlite_store(tmp_path) -> Any:
    store = SQLiteStore(reactor, str(tmp_path / "openclaw.sqlite3"))
    store.startService()
    clock = Clock()
    clock.advance(at(2024, 5, 2, 8))
    beats: list[str] = []

    def start() -> CronService:
        service = CronService(clock, store, (daily("real"),), Notifier(), run_report=lambda day, target: None,
                              run_heartbeat=beats.append, timezone="UTC")
        service.startService()
        return service

    try:
        service = start()
        yield service.settled
        clock.advance(3600)
        yield service.drain()  # the run in progress ends
        service.stopService()
        clock.advance(300)
        service = start()
        yield service.settled
        service.stopService()
        assert beats == ["look around"]
        record = yield store.get_state("cron:real")
        assert (record["due"], record["outcome"], record["settled"]) == (
            at(2024, 5, 2, 9), "ok", at(2024, 5, 2, 9, 5))
        rows = yield store.journal("cron", 0)
        assert [r["payload"]["outcome"] for r in rows] == ["ok"]
    finally:
        yield store.stopService()


def test_a_backup_job_keeps_the_newest_n(tmp_path) -> None:
    from openclaw import backup
    from openclaw.store.sqlite import open_database

    store = tmp_path / "home" / "data" / "openclaw.sqlite3"
    open_database(str(store)).close()
    source = backup.sources(str(tmp_path / "home"), str(store), None, with_secrets=False)
    h = Harness(at(2024, 5, 2, 9, 0))
    made: list[dict] = []
    job = daily("nightly", action="backup", keep=2, to=str(tmp_path / "backups"))
    h.service = CronService(h.clock, h.store, (job,), h.notifier, run_report=lambda *a: None,
                            run_heartbeat=lambda i: None,
                            run_backup=lambda job: made.append(
                                backup.scheduled(source, job.to, job.keep, h.clock.seconds())))
    h.service.startService()
    for day in (3, 4, 5):
        h.advance_to(at(2024, 5, day, 9))
    assert sorted(os.listdir(tmp_path / "backups")) == [
        "openclaw-backup-20240504T090000Z.tar", "openclaw-backup-20240505T090000Z.tar"]
    assert [m["removed"] for m in made][-1] == [str(tmp_path / "backups" / "openclaw-backup-20240503T090000Z.tar")]
    assert [r["outcome"] for r in h.store.cron()] == ["ok", "ok", "ok"]


def test_a_backup_job_without_backups_fails_visibly() -> None:
    h = Harness(at(2024, 5, 2, 9, 0))
    h.start(daily("nightly", action="backup"))
    h.advance_to(at(2024, 5, 3, 9))
    assert h.store.cron()[0]["outcome"] == "failed"
    assert "not available" in h.notifier.sent[0][2]


def test_backup_job_keys_parse() -> None:
    from openclaw.config.proactive import parse_cron

    (job,) = parse_cron([{"name": "b", "schedule": "0 3 * * *", "action": "backup", "keep": 3, "to": "/var/b"}])
    assert (job.action, job.keep, job.to) == ("backup", 3, "/var/b")
    for bad, where in (({"keep": 0}, "keep"), ({"to": "relative/dir"}, "to")):
        try:
            parse_cron([{"name": "b", "schedule": "0 3 * * *", "action": "backup", **bad}])
        except ValueError as e:
            assert f"[0].{where}" in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")


# Several instances: cron on the scheduler holder, its records written with the fencing token


class Fence:
    """The guarded write's rule over a shared store: refused once a newer token was issued."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.latest = 0

    def issue(self) -> int:
        self.latest += 1
        return self.latest

    def writer(self, token: int) -> Any:
        from openclaw.cluster.redis_lease import Fenced

        def save(key: str, value: Any) -> Deferred:
            if token < self.latest:
                return fail(Fenced(f"token {token} is stale"))
            return self.store.set_state(key, value)

        return save


def cluster_cron(h: Harness, fence: Fence, *jobs: CronConfig) -> CronService:
    service = CronService(h.clock, h.store, jobs, h.notifier, run_report=lambda day, target: None,
                          run_heartbeat=lambda instruction: h.action(h.beats, instruction), timezone="UTC",
                          save_state=fence.writer(fence.issue()))
    service.startService()
    return service


def test_a_paused_former_holder_cannot_fire_what_the_new_holder_owns() -> None:
    h = Harness(at(2024, 5, 2, 8))
    fence = Fence(h.store)
    old = cluster_cron(h, fence, daily("beat"))
    new = cluster_cron(h, fence, daily("beat"))  # took over; the old one was paused and never stopped
    h.advance_to(at(2024, 5, 2, 9))  # both timers fire
    assert h.beats == ["look around"]
    assert [(r["due"], r["outcome"]) for r in h.store.cron()] == [(at(2024, 5, 2, 9), "ok")]
    assert h.notifier.sent == []
    assert old.states()[0]["running"] is False and new.states()[0]["last_due"] == at(2024, 5, 2, 9)


def test_a_new_holder_runs_a_due_time_missed_within_grace_and_never_one_already_fired() -> None:
    h = Harness(at(2024, 5, 2, 8))
    fence = Fence(h.store)
    first = cluster_cron(h, fence, daily("beat"))
    h.advance_to(at(2024, 5, 2, 9))
    assert h.beats == ["look around"]
    first.stopService()  # it dies before the next due time
    h.advance_to(at(2024, 5, 3, 9, 0, 30))  # the takeover comes 30 s after it
    second = cluster_cron(h, fence, daily("beat"))
    assert len(h.beats) == 2
    # The first instance gets the lease back later: it reads the records anew and fires nothing twice.
    second.stopService()
    first.save_state = fence.writer(fence.issue())
    first.startService()
    h.advance_to(at(2024, 5, 3, 12))
    assert len(h.beats) == 2
    assert [r["outcome"] for r in h.store.cron()] == ["ok", "ok"]
