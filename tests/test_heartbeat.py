"""The heartbeat on a fake clock: timing, coalescing, verdicts, memory of findings, the dead-man."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from openclaw import metrics
from openclaw.agent.base import BrainError, BrainReply
from openclaw.agent.rules import RulesBrain
from openclaw.config import HeartbeatConfig
from openclaw.gateway.frames import FrameError
from openclaw.notify import Notifier
from openclaw.config.proactive import ActiveHours
from openclaw.proactive.heartbeat import (
    MAX_ITEMS,
    REMIND_AFTER,
    SESSION,
    HeartbeatService,
    checklist_items,
    heartbeat_methods,
    in_active_hours,
    next_active,
)
from openclaw.proactive.snapshot import Snapshotter, digest, mount_of
from openclaw.proactive.verdict import TOKEN
from openclaw.runtime import Runtime
from openclaw.status import TreeStatus
from openclaw.store.sqlite import SQLiteStore
from tests import strategies
from tests.fakes import FixedStatus, StateStore
from tests.llm_servers import FakeFacts
from tests.strategies import dressed_tokens
from tests.waiting import step_clock

EVERY = 1800.0
BERLIN = ZoneInfo("Europe/Berlin")
HOST = {"cpu_percent": 3.0, "load": [0.1, 0.1, 0.1], "cpu_count": 2, "memory_percent": 40.0,
        "disks": {"/": {"used_percent": 50.0, "free_gb": 10.0}}}


class Journal(StateStore):
    def verdicts(self) -> list[str]:
        return [p["verdict"] for _, _, p in self.journal]


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def notify(self, kind: str, source: str, message: str, dedupe_key: str, target: str = "") -> Deferred:
        self.sent.append({"kind": kind, "source": source, "message": message, "dedupe_key": dedupe_key,
                          "target": target})
        return succeed("telegram:1")


class FakeBrain:
    """Answers with the next of ``replies`` (a text, an exception, or a Deferred) and keeps the prompts."""

    name = "openai:test"

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def respond(self, request: Any) -> Deferred:
        assert request.session_id == SESSION
        self.prompts.append(request.text)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Deferred):
            return reply
        if isinstance(reply, Exception):
            return fail(reply)
        return succeed(BrainReply(text=reply, provider=self.name))


class Rig:
    """A heartbeat service with fakes around it, on a fake clock."""

    def __init__(self, tmp_path: Any, brain: Any, every: float = EVERY, start: float = 1_736_935_200.0,
                 checks: list[dict] | None = None, claim: Any = None, state: dict | None = None,
                 **config: Any) -> None:
        self.clock = Clock()
        self.clock.advance(start)
        self.runtime = Runtime(self.clock)
        self.store = Journal()
        self.store.state.update(state or {})
        self.notifier = FakeNotifier()
        self.checks = checks if checks is not None else []
        self.pushed: list[tuple[str, str, dict]] = []
        self.home = tmp_path
        (tmp_path / "HEARTBEAT.md").write_text("- Is the disk full?\n")
        self.host = dict(HOST)
        snap = Snapshotter(self.runtime, str(tmp_path), config.get("timezone", ""),
                           checks=lambda: list(self.checks), host=lambda mounts: self.host)
        self.brain = brain
        self.service = HeartbeatService(
            self.runtime, HeartbeatConfig(every=every, **config), str(tmp_path), brain, self.store, self.notifier,
            snap, push=lambda s, e, p: self.pushed.append((s, e, p)) or 0, claim=claim)
        self.service.startService()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


def runs(verdict: str) -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_heartbeat_runs_total", {"verdict": verdict}) or 0.0


def overdue_gauge() -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_heartbeat_overdue")


# Timing


def test_first_beat_one_interval_after_start_not_at_boot(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN))
    start = rig.clock.seconds()
    assert rig.service.next_beat() == start + EVERY
    rig.advance(0)
    rig.advance(EVERY - 1)
    assert rig.store.journal == [] and rig.runtime.last_heartbeat is None
    rig.advance(1)
    assert rig.store.verdicts() == ["ok"] and rig.runtime.last_heartbeat == start + EVERY
    assert rig.service.next_beat() == start + 2 * EVERY
    rig.advance(EVERY)
    assert rig.store.verdicts() == ["ok", "ok"]


def test_disabled_has_no_timer_but_runs_on_request(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN), every=0)
    rig.advance(10 * 86400)
    assert rig.store.journal == [] and rig.service.next_beat() is None and not rig.service.overdue()
    done = rig.service.beat_now()
    rig.advance(0)
    assert done.result["verdict"] == "ok" and rig.service.next_beat() is None


def test_a_slow_beat_delays_the_next_instead_of_overlapping(tmp_path) -> None:
    slow: Deferred = Deferred()
    rig = Rig(tmp_path, FakeBrain(slow, TOKEN))
    rig.advance(EVERY)
    assert len(rig.brain.prompts) == 1
    rig.advance(5 * EVERY)
    assert len(rig.brain.prompts) == 1 and rig.service.next_beat() is None
    slow.callback(BrainReply(text=TOKEN, provider="x"))
    finished = rig.clock.seconds()
    assert rig.store.verdicts() == ["ok"] and rig.store.journal[0][2]["duration"] == 5 * EVERY
    assert rig.service.next_beat() == finished + EVERY
    rig.advance(EVERY)
    assert len(rig.brain.prompts) == 2


def test_wakes_coalesce_into_one_more_beat_with_all_instructions(tmp_path) -> None:
    slow: Deferred = Deferred()
    rig = Rig(tmp_path, FakeBrain(slow, TOKEN))
    first = rig.service.wake("check")
    rig.advance(0)
    assert len(rig.brain.prompts) == 1
    waiting = [rig.service.wake("check"), rig.service.beat_now("say hi"), rig.service.run_instruction("the report"),
               rig.service.wake()]
    rig.advance(60)
    assert len(rig.brain.prompts) == 1 and not any(d.called for d in waiting)
    slow.callback(BrainReply(text=TOKEN, provider="x"))
    assert first.result["reason"] == "check"
    rig.advance(0)
    assert len(rig.brain.prompts) == 2
    assert "say hi" in rig.brain.prompts[1] and "the report" in rig.brain.prompts[1]
    records = [d.result for d in waiting]
    assert all(r == records[0] for r in records) and records[0]["reason"] == "check,cron,run,wake"
    rig.advance(10 * 60)
    assert len(rig.brain.prompts) == 2


def test_wakes_in_one_turn_share_a_beat(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN))
    ds = [rig.service.wake() for _ in range(5)]
    rig.advance(0)
    assert len(rig.brain.prompts) == 1 and all(d.called for d in ds)
    assert rig.service.next_beat() == rig.clock.seconds() + EVERY


# Verdicts


@settings(max_examples=60, deadline=None)
@given(dressed_tokens(), st.sampled_from(["", "All good.", " nothing to report", "\n\n_Everything is fine._"]),
       st.booleans())
def test_heartbeat_ok_in_any_dressing_is_never_delivered(tmp_path_factory, token: str, ack: str, first: bool) -> None:
    # A space between them either way: "HEARTBEAT_OKAll good." is rightly not the token.
    rig = Rig(tmp_path_factory.mktemp("hb"), FakeBrain(token + " " + ack if first else ack + " " + token))
    rig.advance(EVERY)
    assert rig.notifier.sent == [] and rig.store.verdicts() == ["ok"]
    assert all("text" not in p for _, _, p in rig.pushed)


def test_a_message_is_delivered_without_the_token_and_recorded(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain("**Disk / is 96% full.** Clean /var/log soon.\n\n" + "Details follow. " * 30 + TOKEN),
              target="telegram:1")
    rig.advance(EVERY)
    [sent] = rig.notifier.sent
    assert sent["message"].startswith("**Disk / is 96% full.**") and TOKEN not in sent["message"]
    assert sent["target"] == "telegram:1" and sent["source"] == "heartbeat"
    [(kind, when, record)] = rig.store.journal
    assert kind == "heartbeat" and when == rig.clock.seconds()
    assert record["verdict"] == "acted" and record["actions"] == ["notify:telegram:1"] and record["digest"]
    assert rig.pushed == [(SESSION, "heartbeat", {"verdict": "acted", "timestamp": when,
                                                   "actions": ["notify:telegram:1"], "text": sent["message"]})]


def test_the_prompt_has_snapshot_and_the_checklist_read_afresh(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN), timezone="Europe/Berlin")
    rig.advance(EVERY)
    (tmp_path / "HEARTBEAT.md").write_text("- Water the plants on Wednesdays\n")
    rig.advance(EVERY)
    first, second = rig.brain.prompts
    assert "Is the disk full?" in first and "Water the plants" in second and "Is the disk full?" not in second
    assert '"weekday": "Wednesday"' in second and '"timezone": "Europe/Berlin"' in second
    assert '"memory_percent": 40.0' in second and f"exactly {TOKEN}" in second


def test_tool_calls_count_as_actions(tmp_path) -> None:
    brain = FakeBrain(TOKEN)
    brain.respond = lambda request: succeed(BrainReply(text=TOKEN, provider="p", tool_calls=2))
    rig = Rig(tmp_path, brain)
    rig.advance(EVERY)
    [(_, _, record)] = rig.store.journal
    assert record["verdict"] == "acted" and record["actions"] == ["tool_calls:2"] and rig.notifier.sent == []


@pytest.mark.parametrize("error", [BrainError("all providers failed: 503", retryable=True), RuntimeError("boom")])
def test_brain_failure_sends_nothing_and_is_recorded_and_counted(tmp_path, error: Exception) -> None:
    before = runs("failed")
    rig = Rig(tmp_path, FakeBrain(error))
    rig.advance(EVERY)
    assert rig.notifier.sent == [] and rig.runtime.last_heartbeat is None
    [(_, _, record)] = rig.store.journal
    assert record["verdict"] == "failed" and str(error) in record["error"]
    assert runs("failed") == before + 1
    assert rig.service.next_beat() == rig.clock.seconds() + EVERY


def test_a_failing_snapshot_source_fails_the_beat_quietly(tmp_path) -> None:
    rig = Rig(tmp_path, RulesBrain(FakeFacts()))
    rig.service.snapshotter.checks = lambda: fail(OSError("checks store unreachable"))
    rig.advance(EVERY)
    [(_, _, record)] = rig.store.journal
    assert record["verdict"] == "failed" and "checks store unreachable" in record["error"]
    assert rig.notifier.sent == [] and rig.pushed[-1][2]["verdict"] == "failed"


def test_the_same_model_finding_is_not_resent_within_the_reminder_window(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain("Disk / is 96% full."))
    rig.advance(EVERY)
    rig.advance(EVERY)
    rig.advance(EVERY)
    assert len(rig.notifier.sent) == 1 and rig.store.journal[1][2].get("repeated") == 1
    assert "Disk / is 96% full." in rig.brain.prompts[1].split("## Already told the owner")[1]
    rig.advance(REMIND_AFTER)
    assert len(rig.notifier.sent) == 2


def test_rules_brain_alerts_new_failing_checks_once_and_is_otherwise_silent(tmp_path) -> None:
    rig = Rig(tmp_path, RulesBrain(FakeFacts()))
    rig.advance(EVERY)
    assert rig.notifier.sent == [] and rig.store.verdicts() == ["ok"]
    rig.checks[:] = [{"name": "disk", "ok": False, "detail": "/ 96% used"}, {"name": "web", "ok": True}]
    rig.advance(EVERY)
    rig.advance(EVERY)
    assert [s["message"] for s in rig.notifier.sent] == ["Heartbeat: a check is failing:\n- disk: / 96% used"]
    assert rig.store.verdicts() == ["ok", "acted", "ok"]
    rig.checks.append({"name": "nas", "ok": False, "detail": "timeout"})
    rig.advance(EVERY)
    assert rig.notifier.sent[-1]["message"] == "Heartbeat: a check is failing:\n- nas: timeout"
    rig.checks[:] = [{"name": "nas", "ok": False, "detail": "timeout"}]  # disk recovered
    rig.advance(EVERY)
    rig.checks.append({"name": "disk", "ok": False, "detail": "/ 97% used"})
    rig.advance(EVERY)
    assert len(rig.notifier.sent) == 3 and rig.notifier.sent[-1]["message"].endswith("disk: / 97% used")
    rig.advance(REMIND_AFTER)
    assert rig.notifier.sent[-1]["message"].startswith("Heartbeat: 2 checks are failing")


def test_rules_brain_watches_this_host_with_no_configuration(tmp_path) -> None:
    rig = Rig(tmp_path, RulesBrain(FakeFacts()))
    rig.advance(EVERY)
    assert rig.notifier.sent == []  # 50% disk, 40% memory: nothing to say
    rig.host = {**HOST, "memory_percent": 97.5, "disks": {"/": {"used_percent": 93.0, "free_gb": 1.2}}}
    rig.advance(EVERY)
    assert [s["message"] for s in rig.notifier.sent] == [
        "Heartbeat: 2 things need your attention:\n- disk /: 93% used, 1.2 GB free\n- memory: 97.5% used"]
    rig.advance(EVERY)
    assert len(rig.notifier.sent) == 1  # told once, not every beat
    rig.host = dict(HOST)
    rig.advance(EVERY)
    rig.host = {**HOST, "memory_percent": 99.0}
    rig.advance(EVERY)
    assert rig.notifier.sent[-1]["message"] == "Heartbeat: this needs your attention:\n- memory: 99% used"


def beat(rig: Rig, instruction: str = "") -> dict:
    """An explicit beat, run to its end on the rig's clock; :return: its record."""
    done = []
    rig.service.beat_now(instruction).addCallback(done.append)
    rig.advance(0)
    assert done, "the beat did not finish"
    return done[0]


def test_a_rules_beat_says_what_it_checked_and_which_checklist_items_need_a_model(tmp_path) -> None:
    rig = Rig(tmp_path, RulesBrain(FakeFacts()), checks=[{"name": "web", "ok": False, "detail": "refused"}])
    (tmp_path / "HEARTBEAT.md").write_text("# Mine\n\nprose, not an item\n- Is the backup fresh?\n"
                                           "- Did the NAS\n  log errors?\n1. Mornings: a summary\n")
    record = beat(rig, "look at the printer")
    assert record["checked"] == [
        "checks: 1 configured, 1 failing (1 without an alert policy of their own)",
        "disks: / (a finding at 90% used)", "memory: 40.0% used (a finding at 95%)"]
    assert record["not_acted_on"] == ["Is the backup fresh?", "Did the NAS log errors?", "Mornings: a summary"]
    assert "does not read HEARTBEAT.md or the instruction" in record["note"]
    assert rig.store.journal[-1][2]["not_acted_on"] == record["not_acted_on"]  # in the journal too
    (tmp_path / "HEARTBEAT.md").write_text("")
    quiet = beat(rig)
    assert "not_acted_on" not in quiet and "note" not in quiet and quiet["checked"]


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30)
                .map(str.strip).filter(bool), max_size=60))
def test_checklist_items_are_the_list_lines(items: list[str]) -> None:
    text = "# A heading\n" + "".join(f"- {item}\n" for item in items) + "\nA closing paragraph.\n"
    assert checklist_items(text) == [" ".join(item.split("\n"))[:200] for item in items][:MAX_ITEMS]


def test_rules_brain_reads_check_service_states_and_ignores_unprobed_checks(tmp_path) -> None:
    rig = Rig(tmp_path, RulesBrain(FakeFacts()), checks=[
        {"name": "web", "type": "http", "ok": None, "last_detail": None, "last_latency": None, "failures": 0},
        {"name": "nas", "type": "tcp", "ok": False, "last_detail": "connection refused", "last_latency": 0.01},
        # Its own alert policy already told the owner: the heartbeat does not repeat it.
        {"name": "db", "type": "tcp", "ok": False, "last_detail": "timeout", "alerting": True},
    ])
    rig.advance(EVERY)
    assert [s["message"] for s in rig.notifier.sent] == ["Heartbeat: a check is failing:\n- nas: connection refused"]


# Dead-man


def test_dead_man_after_twice_the_interval_and_cleared_by_a_beat(tmp_path) -> None:
    hung: Deferred = Deferred()
    rig = Rig(tmp_path, FakeBrain(hung, TOKEN))
    start = rig.clock.seconds()
    rig.advance(2 * EVERY - 1)
    assert not rig.service.overdue() and overdue_gauge() == 0
    rig.advance(1)
    assert rig.service.overdue() and overdue_gauge() == 1 and rig.service.status()["overdue"]
    hung.callback(BrainReply(text=TOKEN, provider="x"))
    assert not rig.service.overdue() and overdue_gauge() == 0
    assert rig.runtime.last_heartbeat == start + 2 * EVERY


def test_beats_that_keep_failing_trip_the_dead_man(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN, BrainError("down", retryable=True)))
    rig.advance(EVERY)
    rig.advance(EVERY)
    assert not rig.service.overdue()
    rig.advance(EVERY)
    assert rig.service.overdue() and rig.store.verdicts() == ["ok", "failed", "failed"]


def test_regular_beats_never_trip_the_dead_man(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN))
    for _ in range(20):
        rig.advance(EVERY / 2)
        assert not rig.service.overdue()
    assert len(rig.store.journal) == 10


# Active hours


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize("hours,local,inside", [
    (ActiveHours("08:00", "22:00"), "2025-01-15T08:00", True),
    (ActiveHours("08:00", "22:00"), "2025-01-15T21:59", True),
    (ActiveHours("08:00", "22:00"), "2025-01-15T22:00", False),
    (ActiveHours("08:00", "22:00"), "2025-01-15T07:59", False),
    (ActiveHours("22:00", "06:00"), "2025-01-15T23:30", True),
    (ActiveHours("22:00", "06:00"), "2025-01-15T05:00", True),
    (ActiveHours("22:00", "06:00"), "2025-01-15T12:00", False),
    (ActiveHours("00:00", "24:00"), "2025-01-15T23:59", True),
    (ActiveHours("09:00", "09:00"), "2025-01-15T03:00", True),
])
def test_in_active_hours_local_to_the_zone(hours: ActiveHours, local: str, inside: bool) -> None:
    assert in_active_hours(at(local), hours, BERLIN) is inside


def test_the_window_is_read_on_the_zone_s_clock() -> None:
    morning = at("2025-01-15T07:30")  # 15:30 in Tokyo, 06:30 UTC
    hours = ActiveHours("08:00", "22:00")
    assert not in_active_hours(morning, hours, BERLIN)
    assert in_active_hours(morning, hours, ZoneInfo("Asia/Tokyo"))
    assert not in_active_hours(morning, hours, ZoneInfo("UTC"))


@pytest.mark.parametrize("hours,local,expected", [
    (ActiveHours("08:00", "22:00"), "2025-01-15T22:20", "2025-01-16T08:00"),
    (ActiveHours("08:00", "22:00"), "2025-01-15T03:00", "2025-01-15T08:00"),
    (ActiveHours("08:00", "22:00"), "2025-01-15T09:00", "2025-01-15T09:00"),
    (ActiveHours("22:00", "06:00"), "2025-01-15T12:00", "2025-01-15T22:00"),
    (ActiveHours("08:00", "22:00"), "2025-03-29T23:00", "2025-03-30T08:00"),  # across the DST change
    (ActiveHours("02:30", "06:00"), "2025-03-30T01:00", "2025-03-30T03:00"),  # opening in the gap: the jump
])
def test_next_active_in_the_zone(hours: ActiveHours, local: str, expected: str) -> None:
    assert next_active(at(local), hours, BERLIN) == at(expected)


def test_timer_waits_for_the_window_and_the_dead_man_ignores_the_night(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN), start=at("2025-01-15T21:40"), timezone="Europe/Berlin",
              active_hours=ActiveHours("08:00", "22:00"))
    assert rig.service.next_beat() == at("2025-01-16T08:00")
    rig.advance(at("2025-01-16T08:00") - rig.clock.seconds() - 1)
    assert rig.store.journal == [] and not rig.service.overdue()
    rig.advance(1)
    assert rig.store.verdicts() == ["ok"] and rig.service.next_beat() == at("2025-01-16T08:30")
    assert rig.service.status()["active_hours"] == {"start": "08:00", "end": "22:00"}


def test_outside_hours_a_wake_is_skipped_but_an_explicit_run_is_not(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN), start=at("2025-01-15T23:00"), timezone="Europe/Berlin",
              active_hours=ActiveHours("08:00", "22:00"))
    skipped = rig.service.wake("check")
    rig.advance(0)
    assert skipped.result["verdict"] == "skipped" and rig.brain.prompts == []
    ran = rig.service.beat_now()
    rig.advance(0)
    assert ran.result["verdict"] == "ok" and len(rig.brain.prompts) == 1
    assert rig.service.next_beat() == at("2025-01-16T08:00")


# Gateway methods, drain


def test_gateway_methods(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN))
    methods = heartbeat_methods(rig.service)
    with pytest.raises(FrameError):
        methods["heartbeat.run"](None, {"instruction": 5})
    d = methods["heartbeat.run"](None, {"instruction": "look at the NAS"})
    rig.advance(0)
    assert d.result["verdict"] == "ok" and d.result["instruction"] == "look at the NAS"
    assert "look at the NAS" in rig.brain.prompts[0]
    status = methods["heartbeat.status"](None, {})
    assert status["last_verdict"] == "ok" and status["overdue"] is False and status["every"] == EVERY
    assert status["last"] is not None and status["next"] is not None and status["active_hours"] is None


def test_drain_waits_for_the_running_beat_and_then_takes_none(tmp_path) -> None:
    slow: Deferred = Deferred()
    rig = Rig(tmp_path, FakeBrain(slow))
    rig.advance(EVERY)
    pending = rig.service.wake()
    drained = rig.service.drain()
    assert not drained.called and pending.result["verdict"] == "skipped"
    slow.callback(BrainReply(text=TOKEN, provider="x"))
    assert drained.called and rig.service.next_beat() is None
    rig.advance(10 * EVERY)
    assert len(rig.brain.prompts) == 1 and rig.service.wake().result["verdict"] == "skipped"


# Snapshot


def test_snapshot_fields_and_a_digest_blind_to_the_clock(tmp_path) -> None:
    rig = Rig(tmp_path, FakeBrain(TOKEN), checks=[{"name": "disk", "ok": True, "detail": ""}])
    rig.runtime.sessions.touch("telegram:1", "telegram", rig.clock.seconds())
    down = FixedStatus("connectors", lambda: {"telegram": {"connected": False, "last_error": "401", "last_receive": "x"}})
    snap = Snapshotter(rig.runtime, str(tmp_path), "Europe/Berlin", tree=TreeStatus([down]), recent_errors=lambda: 3,
                       checks=lambda: succeed([{"name": "disk", "ok": True}]), cron_due=lambda: ["morning-report"],
                       host=lambda mounts: {"mounts": mounts})
    first = snap.take().result
    assert first["connectors"] == {"telegram": {"connected": False, "last_error": "401"}}
    assert first["sessions"] == {"known": 1, "active_last_hour": 1} and first["errors_last_hour"] == 3
    assert first["cron_due"] == ["morning-report"] and first["host"]["mounts"][0] == "/"
    assert first["now"]["timezone"] == "Europe/Berlin" and first["now"]["time"].endswith("+01:00")
    rig.advance(7200)
    second = snap.take().result
    assert second["now"] != first["now"] and second["sessions"]["active_last_hour"] == 0
    assert digest(second) != digest(first)
    rig.runtime.sessions.touch("telegram:1", "telegram", rig.clock.seconds())
    assert digest(snap.take().result) == digest(first)


def test_mount_of_home() -> None:
    assert mount_of("/") == "/"
    assert mount_of("/proc/self") == "/proc"


# End to end with the real store and notifier


@pytest_twisted.inlineCallbacks
def test_a_failing_check_reaches_the_outbox_and_the_journal(tmp_path) -> Any:
    runtime = Runtime(reactor)
    store = SQLiteStore(reactor, str(tmp_path / "s.sqlite3"), 50)
    store.startService()
    kicks: list[int] = []
    notifier = Notifier(reactor, store, lambda s, e, p: 0, lambda: kicks.append(1), target="telegram:7")
    snap = Snapshotter(runtime, str(tmp_path), checks=lambda: [{"name": "nas", "ok": False, "detail": "down"}])
    service = HeartbeatService(runtime, HeartbeatConfig(every=EVERY, target="telegram:7"), str(tmp_path),
                               RulesBrain(FakeFacts()), store, notifier, snap)
    service.startService()
    try:
        record = yield service.beat_now()
        again = yield service.beat_now()
        assert record["verdict"] == "acted" and record["actions"] == ["notify:telegram:7"]
        assert again["verdict"] == "ok" and again["repeated"] == 1
        due = yield store.due_outbox(reactor.seconds() + 1, 10)
        assert [(i.session_id, i.text) for i in due] == [("telegram:7", "Heartbeat: a check is failing:\n- nas: down")]
        journal = yield store.journal("heartbeat", 0)
        assert [r["payload"]["verdict"] for r in journal] == ["acted", "ok"] and kicks == [1]
    finally:
        yield service.stopService()
        yield store.stopService()


# The scheduler as a state machine


class HeldBrain:
    """Answers ``HEARTBEAT_OK`` at once, or holds the next reply open (a slow beat); notes what it sees."""

    name = "openai:test"

    def __init__(self, machine: HeartbeatMachine) -> None:
        self.machine = machine
        self.hold_next = False
        self.held: Deferred | None = None

    def respond(self, request: Any) -> Deferred:
        m = self.machine
        now = m.rig.clock.seconds()
        if self.held is not None:
            m.violations.append(f"two beats at once at {now}")
        if not in_active_hours(now, m.hours, UTC):
            m.violations.append(f"the brain was asked at {now}, outside the active hours")
        if m.stopped:
            m.violations.append(f"a beat started at {now}, after stop")
        if self.hold_next:
            self.hold_next = False
            self.held = Deferred()
            return self.held
        return succeed(BrainReply(text=TOKEN, provider=self.name))


UTC = ZoneInfo("UTC")
DAY0 = datetime(2025, 1, 15, tzinfo=UTC).timestamp()


class HeartbeatMachine(RuleBasedStateMachine):
    """
    Wakes, slow beats, time passing across the active hours, and a drain,
    against a model of the rules in docs/heartbeat.md.  Every beat is read
    back from the journal (in order, with start and duration); every wake's
    Deferred says which beat served it (the journal's length when it fired).
    """

    def __init__(self) -> None:
        super().__init__()
        self.home = tempfile.mkdtemp(prefix="hb-machine-")
        self.violations: list[str] = []
        self.seen = 0  # journal entries checked so far
        self.stopped = False
        self.wakes: list[tuple[int, list]] = []  # (index of the beat that must serve it, [(index, record)])
        self.drains: list[Deferred] = []
        self.beats_allowed_after_stop = 0

    @initialize(hours=strategies.active_hours(), every=st.sampled_from([600.0, 1800.0, 3600.0]),
                start=st.sampled_from([0.0, 7.5 * 3600, 8 * 3600 - 60, 12 * 3600, 21.75 * 3600, 23 * 3600]))
    def build(self, hours: ActiveHours | None, every: float, start: float) -> None:
        self.hours, self.every, self.t0 = hours, every, DAY0 + start
        self.prev_end = self.t0  # where the next timed beat's interval is measured from
        self.brain = HeldBrain(self)
        self.rig = Rig(Path(self.home), self.brain, every=every, start=self.t0, timezone="UTC", active_hours=hours)

    def teardown(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    @property
    def journal(self) -> list[tuple[str, float, dict]]:
        return self.rig.store.journal

    # Rules

    @rule(seconds=st.sampled_from([0.0, 1.0, 60.0, 599.0, 600.0, 1800.0, 3600.0, 4 * 3600.0]))
    def time_passes(self, seconds: float) -> None:
        step_clock(self.rig.clock, seconds)

    @precondition(lambda self: self.hours is not None)
    @rule(edge=st.sampled_from(["start", "end"]), offset=st.sampled_from([-1.0, 0.0, 1.0]))
    def to_an_edge_of_the_active_hours(self, edge: str, offset: float) -> None:
        now = self.rig.clock.seconds()
        hh, mm = getattr(self.hours, edge).split(":")
        target = DAY0 + int(hh) * 3600 + int(mm) * 60 + offset
        while target <= now:
            target += 86400
        step_clock(self.rig.clock, target - now)

    @rule()
    def wake(self) -> None:
        running = self.rig.service.status()["running"]
        served: list = []
        d = self.rig.service.wake()
        d.addCallback(lambda record: served.append((len(self.journal), record)))
        if self.stopped:
            assert served and served[0][1] == {"verdict": "skipped", "reason": "shutting down"}
            return
        # Idle: the next beat serves it; during a beat: the one right after.
        self.wakes.append((len(self.journal) + (2 if running else 1), served))

    @precondition(lambda self: not self.stopped and self.brain.held is None)
    @rule()
    def the_next_beat_is_slow(self) -> None:
        self.brain.hold_next = True

    @precondition(lambda self: self.brain.held is not None)
    @rule()
    def the_slow_beat_ends(self) -> None:
        held, self.brain.held = self.brain.held, None
        held.callback(BrainReply(text=TOKEN, provider="x"))
        assert all(d.called for d in self.drains), "the drain did not end with the beat in flight"

    @precondition(lambda self: not self.stopped)
    @rule(stop=st.booleans())
    def drain(self, stop: bool) -> None:
        running = self.rig.service.status()["running"]
        d = self.rig.service.stopService() if stop else self.rig.service.drain()
        self.stopped = True
        self.beats_allowed_after_stop = len(self.journal) + (1 if running else 0)
        for index, served in self.wakes:
            if index > self.beats_allowed_after_stop:
                assert served and served[0][1]["reason"] == "shutting down", "a wake left waiting by the drain"
        if not stop:
            assert d.called != running, "drain must wait for the beat in flight, and only for it"
            if not d.called:
                self.drains.append(d)

    # Invariants

    @invariant()
    def nothing_wrong_seen_by_the_brain(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def every_beat_keeps_the_rules(self) -> None:
        hours = self.hours
        for index in range(self.seen + 1, len(self.journal) + 1):
            kind, started, record = self.journal[index - 1]
            assert kind == "heartbeat"
            assert started >= self.prev_end, "two beats at once"
            if record["reason"] == "interval":
                assert started >= self.t0 + self.every, "a beat at boot"
                assert started == next_active(self.prev_end + self.every, hours, UTC), "a timed beat off its time"
                assert record["verdict"] == "ok"
            else:
                assert record["reason"] == "wake"
                assert any(i == index for i, _ in self.served()), "a beat no wake asked for"
                inside = in_active_hours(started, hours, UTC)
                assert record["verdict"] == ("ok" if inside else "skipped"), "a beat outside the active hours"
            self.prev_end = started + record["duration"]
        self.seen = len(self.journal)

    @invariant()
    def each_wake_is_served_by_the_beat_it_was_due(self) -> None:
        for index, served in self.wakes:
            if served and served[0][1]["reason"] != "shutting down":
                assert served[0][0] == index, f"a wake due for beat {index} was served by beat {served[0][0]}"

    @invariant()
    def no_beat_after_stop(self) -> None:
        if self.stopped:
            assert len(self.journal) <= self.beats_allowed_after_stop
            assert self.rig.service.next_beat() is None

    def served(self) -> list[tuple[int, dict]]:
        return [s[0] for _, s in self.wakes if s]


TestHeartbeatMachine = HeartbeatMachine.TestCase
TestHeartbeatMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# Several instances: beats claimed by the scheduler's holder, resumed from the last claim


def test_a_beat_whose_claim_is_refused_is_skipped_without_asking_the_brain(tmp_path) -> None:
    from openclaw.cluster.redis_lease import Fenced

    brain = FakeBrain(TOKEN)
    rig = Rig(tmp_path, brain, claim=lambda key, value: fail(Fenced("stale token")))
    rig.advance(EVERY)
    assert rig.store.verdicts() == ["skipped"] and brain.prompts == []
    assert rig.store.journal[0][2]["skipped"] == "another instance holds the scheduler"


def test_each_beat_claims_its_start(tmp_path) -> None:
    claims: list[tuple[str, Any]] = []
    rig = Rig(tmp_path, FakeBrain(TOKEN), claim=lambda key, value: claims.append((key, value)) or succeed(None))
    start = rig.clock.seconds()
    rig.advance(EVERY)
    assert claims == [("heartbeat:last", {"started": start + EVERY})]
    assert rig.store.verdicts() == ["ok"]


@pytest.mark.parametrize(("ago", "first_in"), [
    (EVERY / 4, EVERY * 3 / 4),   # the last holder beat recently: one interval after its beat
    (EVERY * 1.5, 0.0),           # due and missed by less than an interval (it died): at once
    (EVERY * 5, EVERY),           # long ago (the whole cluster was down): one interval after start, not at boot
])
def test_a_new_scheduler_holder_resumes_from_the_last_claimed_beat(tmp_path, ago: float, first_in: float) -> None:
    start = 1_736_935_200.0
    rig = Rig(tmp_path, FakeBrain(TOKEN), start=start, state={"heartbeat:last": {"started": start - ago}},
              claim=lambda key, value: succeed(None))
    if first_in:
        rig.advance(first_in - 1)
        assert rig.store.verdicts() == []
        rig.advance(1)
    else:
        rig.advance(0)
    assert rig.store.verdicts() == ["ok"]
