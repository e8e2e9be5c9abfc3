"""
The heartbeat: every ``heartbeat.every`` (within the active hours) the
daemon looks at itself, reads ``<home>/HEARTBEAT.md`` afresh and asks the
brain whether anything needs the owner's attention.

Timing rules (docs/heartbeat.md):

- never at boot: the first beat is due one interval after start, so a
  restart loop cannot become an alert loop;
- never two at once: the next beat is due one interval after the previous
  one *finished*, so a slow beat delays the next instead of overlapping it;
- wakes (``heartbeat.run``, ``openclaw heartbeat now``, a finished check, a
  cron job) coalesce: any number arriving while a beat is pending or running
  cause one more beat, which carries all their instructions;
- outside the active hours the timer waits for the window to open; a wake
  that is not forced is recorded as ``skipped``;
- dead-man: a beat that was due and has not completed successfully one
  interval later (twice the interval after the previous one, not counting
  time outside the active hours) sets ``overdue``.

The first three, and the wait for the window, come from the loop the beats
run on (``openclaw.periodic.PeriodicService``): its due times are moved into
the active hours, and wakes are its ``call_soon``, gathered per reactor turn.

Across several instances on one Redis the heartbeat runs on the scheduler
lease's holder only.  Each beat first claims its start in the store with
the lease's guarded write (``heartbeat:last``): a former holder that wakes
from a pause cannot claim, so it skips instead of beating alongside the new
holder; and a new holder plans its first beat one interval after the last
claimed one (at once if that is past by less than an interval).

With the offline rules brain there is no model to ask: failing checks become
one alert (each finding at most once per ``REMIND_AFTER``) and otherwise the
beat stays silent.  A model gets the snapshot, the checklist and what it
already said recently, and answers ``HEARTBEAT_OK`` or a message for the
owner; the token is never delivered.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Callable

from eliot.twisted import DeferredContext, inline_callbacks
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall
from zope.interface import implementer

from openclaw import health, metrics
from openclaw.agent.base import BrainRequest
from openclaw.config import Config, HeartbeatConfig
from openclaw.eliotutil import action_type, begin, log, message_type, typed
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError
from openclaw.interfaces import IDrainable, IReconfigurable, IStatusSource
from openclaw.config.proactive import ActiveHours
from openclaw.periodic import PeriodicService
from openclaw.proactive.schedule import instant, wall, zone
from openclaw.proactive.snapshot import Snapshotter, digest, local_time
from openclaw.proactive.verdict import TOKEN, is_heartbeat_ok, strip_token
from openclaw.runtime import Runtime
from openclaw.status import StatusSource

SESSION = "system:heartbeat"
VERDICTS = ("ok", "acted", "failed", "skipped")
# The same finding is told again only after this long.
REMIND_AFTER = 24 * 3600.0
REPORTED_KEY = "heartbeat:reported"
#: The last beat's start, written by the scheduler holder (a cluster's guarded write).
LAST_KEY = "heartbeat:last"
MAX_INSTRUCTION = 2000
SHUTTING_DOWN = {"verdict": "skipped", "reason": "shutting down"}

INSTRUCTION = f"""\
This is a heartbeat: nobody wrote to you; you are checking on your owner's machine.
Below are a snapshot of the system, what you already told the owner recently,
and the owner's checklist (HEARTBEAT.md). Go through the checklist against the snapshot.
- If something needs the owner's attention, use your tools if that helps, then reply
  with a short message for the owner; it will be delivered to them. Do not include {TOKEN}.
- If nothing needs attention, reply with exactly {TOKEN} and nothing else.
Do not repeat what you already told the owner unless it got worse."""


def _minutes(clock_time: str) -> int:
    hours, minutes = clock_time.split(":")
    return int(hours) * 60 + int(minutes)


def in_active_hours(when: float, hours: ActiveHours | None, tz: tzinfo) -> bool:
    """Whether ``when`` falls in the window (``start > end`` spans midnight; ``start == end``: all day)."""
    if hours is None:
        return True
    start, end = _minutes(hours.start), _minutes(hours.end)
    local = wall(when, tz)
    now = local.hour * 60 + local.minute + local.second / 60
    if start < end:
        return start <= now < end
    if start > end:
        return now >= start or now < end
    return True


def next_active(when: float, hours: ActiveHours | None, tz: tzinfo) -> float:
    """
    The earliest time at or after ``when`` inside the active hours (an
    opening inside a DST gap is the jump itself, as for cron).
    """
    if in_active_hours(when, hours, tz):
        return when
    assert hours is not None
    opening = datetime.combine(wall(when, tz).date(), time()) + timedelta(minutes=_minutes(hours.start))
    if instant(opening, tz) <= when:
        opening += timedelta(days=1)
    return instant(opening, tz)


def _text_key(text: str) -> str:
    return "msg:" + hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()[:16]


def fresh(reported: dict[str, dict], now: float) -> dict[str, dict]:
    """The reported findings still within ``REMIND_AFTER`` (older ones may be told again)."""
    return {k: v for k, v in reported.items() if now - v.get("at", 0) < REMIND_AFTER}


def build_prompt(snapshot: dict, checklist: str, reported: dict[str, dict], instruction: str,
                 tz: tzinfo) -> str:
    """The heartbeat's request text for a model brain."""
    parts = [INSTRUCTION]
    if instruction:
        parts.append(f"## This beat's extra instruction\n{instruction}")
    parts.append("## Snapshot\n```json\n" + json.dumps(snapshot, indent=1, sort_keys=True, default=str) + "\n```")
    told = sorted(reported.values(), key=lambda v: v["at"])
    parts.append("## Already told the owner\n" + ("\n".join(
        f"- {local_time(v['at'], tz).isoformat(timespec='minutes')}: {v['text']}" for v in told) or "(nothing)"))
    parts.append("## HEARTBEAT.md\n" + (checklist.strip() or "(empty: use your judgement, stay quiet if unsure)"))
    return "\n\n".join(parts)


def failing_checks(snapshot: dict) -> list[dict]:
    """
    Failing checks the heartbeat must tell about.  Checks that carry
    ``alerting`` have an alert policy of their own (``ChecksService``): it
    already tells the owner once per incident, so the heartbeat does not
    tell again.
    """
    return [c for c in snapshot.get("checks", []) if c.get("ok") is False and "alerting" not in c]


def _finding(check: dict) -> str:
    return f"{check.get('name')}: {check.get('detail') or 'failing'}"


# The host itself, watched with no configuration at all (the rules brain).
DISK_USED_PERCENT = 90.0
MEMORY_USED_PERCENT = 95.0
FINDING_PREFIXES = ("check:", "host:")


ERROR = typed("error", [str], "why")
HEARTBEAT_BEAT = action_type("openclaw:heartbeat:beat", [
    typed("reason", [str], "interval, run, cron, wake..."), typed("forced", [bool], "run outside active hours / when busy"),
], [], "one heartbeat; openclaw:notify inside when it told the owner something")
HEARTBEAT_FAILED = message_type("openclaw:heartbeat:failed", [ERROR],
                                "the brain or the snapshot failed; the beat is recorded failed, nothing sent", "error")
HEARTBEAT_ERROR = message_type("openclaw:heartbeat:error", [ERROR], "a bug in the beat itself (the next one runs)",
                               "error")
HEARTBEAT_JOURNAL_FAILED = message_type("openclaw:heartbeat:journal-failed", [ERROR],
                                        "the beat's journal record could not be written", "error")
HEARTBEAT_OVERDUE = message_type("openclaw:heartbeat:overdue", [
    typed("every", [int, float], "the interval, seconds"), typed("last", [int, float, None], "the last good beat"),
    typed("running", [bool], "a beat is running now"),
], "the dead-man signal: no good beat within twice the interval", "error")
HEARTBEAT_RECOVERED = message_type("openclaw:heartbeat:recovered", [], "a good beat after overdue", "warn")


def findings(snapshot: dict) -> dict[str, str]:
    """What the rules heartbeat tells about, by a stable key: failing checks and a full disk or memory."""
    found = {f"check:{c.get('name')}": _finding(c) for c in failing_checks(snapshot)}
    host = snapshot.get("host") or {}
    for mount, disk in sorted((host.get("disks") or {}).items()):
        used = disk.get("used_percent")
        if isinstance(used, (int, float)) and used >= DISK_USED_PERCENT:
            found[f"host:disk:{mount}"] = f"disk {mount}: {used:g}% used, {disk.get('free_gb', '?')} GB free"
    memory = host.get("memory_percent")
    if isinstance(memory, (int, float)) and memory >= MEMORY_USED_PERCENT:
        found["host:memory"] = f"memory: {memory:g}% used"
    return found


MAX_ITEMS = 50
_ITEM = re.compile(r"\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(.*\S)")


def checklist_items(text: str) -> list[str]:
    """
    The items of a ``HEARTBEAT.md``: its list lines (``-``, ``*``, ``+``,
    ``1.``), with indented continuation lines joined; headings and prose
    are not items.  At most ``MAX_ITEMS``, each cut to 200 characters.
    """
    items: list[str] = []
    in_item = False
    for line in text.splitlines():
        match = _ITEM.fullmatch(line)
        if match:
            items.append(match.group(1))
            in_item = True
        elif in_item and line.startswith((" ", "\t")) and line.strip():
            items[-1] += " " + line.strip()
        else:
            in_item = False
    return [item[:200] for item in items[:MAX_ITEMS]]


def rules_checked(snapshot: dict) -> list[str]:
    """What the rules heartbeat looked at, in words, for the beat's record and ``heartbeat now``."""
    checks = snapshot.get("checks", [])
    failing = sum(c.get("ok") is False for c in checks)
    told = len(failing_checks(snapshot))
    host = snapshot.get("host") or {}
    disks = sorted(host.get("disks") or {})
    return [
        f"checks: {len(checks)} configured, {failing} failing"
        + (f" ({told} without an alert policy of their own)" if told else ""),
        f"disks: {', '.join(disks) or 'none found'} (a finding at {DISK_USED_PERCENT:g}% used)",
        f"memory: {host.get('memory_percent', '?')}% used (a finding at {MEMORY_USED_PERCENT:g}%)",
    ]


def finding_message(new: dict[str, str]) -> str:
    """One message for the findings not told yet."""
    if all(k.startswith("check:") for k in new):
        head = "a check is failing" if len(new) == 1 else f"{len(new)} checks are failing"
    else:
        head = "this needs your attention" if len(new) == 1 else f"{len(new)} things need your attention"
    return f"Heartbeat: {head}:\n" + "\n".join(f"- {text}" for text in new.values())


@implementer(IDrainable, IReconfigurable, IStatusSource)
class HeartbeatService(StatusSource, Service):
    """
    :param config: the ``heartbeat:`` section (``every=0``: no timer; explicit
        runs still work).
    :param brain: an ``IBrain``; ``rules`` takes the deterministic path.
    :param store: an ``IStore`` (journal and ``heartbeat:reported`` state).
    :param notifier: ``openclaw.notify.Notifier``: delivers to the target.
    :param snapshotter: builds the snapshot (default: runtime and psutil only).
    :param push: ``WebchatHub.push``, for the ``heartbeat`` gateway event.
    :param claim: ``(key, value) -> Deferred``, the scheduler lease's guarded
        write: each beat claims its start with it (failing: not the holder,
        skipped), and a start resumes from the last claim.  None: a daemon alone.
    """

    def __init__(
        self, runtime: Runtime, config: HeartbeatConfig, home: str, brain: Any, store: Any, notifier: Any,
        snapshotter: Snapshotter | None = None, push: Callable[[str, str, dict], int] = lambda s, e, p: 0,
        claim: Callable[[str, Any], Deferred] | None = None,
    ) -> None:
        self.runtime = runtime
        self.claim = claim
        self.clock = runtime.clock
        self.config = config
        self.tz = zone(config.timezone)
        self.checklist_path = os.path.join(home, "HEARTBEAT.md")
        self.brain = brain
        self.store = store
        self.notifier = notifier
        self.snapshotter = snapshotter or Snapshotter(runtime, home, config.timezone)
        self.push = push
        self.last: dict[str, Any] | None = None
        self.deadline: float | None = None
        #: The beats' timer: one interval after start or after the previous beat
        #: ended, moved into the active hours; wakes coalesce on it.
        self.loop = PeriodicService(self.clock, config.every, self._beat_requested, name="heartbeat",
                                    align=self._into_hours, gather_turn=True)
        self._watchdog: IDelayedCall | None = None
        self._instructions: list[str] = []
        self._reasons: list[str] = []
        self._force = False
        self._stopping = False
        self._drained: Deferred | None = None
        self._flagged = False
        self._started_at = self.clock.seconds()
        for verdict in VERDICTS:
            metrics.heartbeat_runs.labels(verdict)

    # Lifecycle

    def startService(self) -> None:
        Service.startService(self)
        self._stopping = False
        self._started_at = self.clock.seconds()
        self.loop.startService()
        if self.every > 0:
            self._set_deadline(self.clock.seconds())
            if self.claim is not None:
                self.store.get_state(LAST_KEY).addCallbacks(self._resume, lambda f: None)

    def _resume(self, last: Any) -> None:
        """A new scheduler holder: the next beat one interval after the last claimed one."""
        if not isinstance(last, dict) or not isinstance(last.get("started"), (int, float)):
            return
        if not self.running or self._stopping or self.loop.busy:
            return
        due, now = last["started"] + self.every, self.clock.seconds()
        if due > now:
            self.loop.set_interval(self.every, next_in=due - now)
        elif now < due + self.every:
            self.loop.call_soon()  # missed by less than an interval (the holder died): now

    def reconfigure(self, config: Config) -> None:
        """
        A new interval, active hours or zone: the next beat is re-planned from
        the last one (never from now, so shortening the interval is felt at
        once and a reload is not a beat); a beat in flight finishes first.
        """
        new = config.heartbeat
        if new == self.config:
            return
        self.config, self.tz = new, zone(new.timezone)
        # Between beats the loop re-plans the next one from the end of the
        # last (or the start), moved into the new hours; a beat running or
        # requested plans with the new interval when it ends.
        self.loop.set_interval(new.every)
        if not self.running or self._stopping or self.loop.busy or self._reasons:
            return  # the beat in flight (or asked for) sets the deadline when it succeeds
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        self.deadline = None
        due = self.loop.next_call()
        if self.every > 0 and due is not None:
            self._set_deadline_at(due + self.every)

    def drain(self) -> Deferred:
        """No new beats once shutdown begins; wait for the one in flight (``hurry`` stops waiting)."""
        self._stopping = True
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        self._flagged = False
        metrics.heartbeat_overdue.set(0)
        self._reasons, self._instructions, self._force = [], [], False
        running = self.loop.stopService()  # requests not yet served are answered "shutting down"
        if running.called:
            return running
        if self._drained is None or self._drained.called:
            self._drained = Deferred()
            running.addBoth(lambda _: self.hurry())
        return self._drained

    def hurry(self) -> None:
        if self._drained is not None and not self._drained.called:
            self._drained.callback(None)

    def stopService(self) -> Deferred:
        self.drain()
        Service.stopService(self)
        return succeed(None)

    # Scheduling

    @property
    def every(self) -> float:
        """The interval (the loop's, so that ``loop.set_interval`` changes it)."""
        return self.loop.interval

    def next_beat(self) -> float | None:
        """When the next timed beat is due; ``None`` while one runs, or when disabled or stopped."""
        return self.loop.next_call()

    status_key = "heartbeat"

    def problems(self) -> list[str]:
        return ["the heartbeat is overdue"] if self.overdue() else []

    def overdue(self) -> bool:
        """The dead-man signal: a due beat has not completed successfully within one more interval."""
        return self.deadline is not None and not self._stopping and self.clock.seconds() >= self.deadline

    def _into_hours(self, due: float) -> float:
        return next_active(due, self.config.active_hours, self.tz)

    def _set_deadline(self, after: float) -> None:
        """After a success (or at start): the beat due next must complete within one more interval."""
        self._set_deadline_at(self._into_hours(after + self.every) + self.every)

    def _set_deadline_at(self, deadline: float) -> None:
        """The dead-man deadline: ``overdue`` from ``deadline`` on unless a beat succeeds first."""
        self.deadline = deadline
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = self.clock.callLater(self.deadline - self.clock.seconds(), self._watch)
        if self._flagged:
            self._flagged = False
            metrics.heartbeat_overdue.set(0)
            log(HEARTBEAT_RECOVERED, level="warn")

    def _watch(self) -> None:
        self._watchdog = None
        if self.overdue():
            self._flagged = True
            metrics.heartbeat_overdue.set(1)
            log(HEARTBEAT_OVERDUE, level="error", every=self.every,
                last=self.runtime.last_heartbeat, running=self.loop.busy)

    def wake(self, reason: str = "wake", force: bool = False) -> Deferred:
        """
        Ask for a beat as soon as possible (coalescing with one pending or
        running).  Unforced wakes outside the active hours are skipped.

        :return: a Deferred firing with the record of the beat that served it.
        """
        return self._request(reason, force=force)

    def beat_now(self, instruction: str = "") -> Deferred:
        """A beat now whatever the hours (the owner asked): ``heartbeat.run``."""
        return self._request("run", instruction, force=True)

    def run_instruction(self, instruction: str) -> Deferred:
        """A beat carrying an extra instruction, for cron jobs with ``action: heartbeat``."""
        return self._request("cron", instruction, force=True)

    def _request(self, reason: str, instruction: str = "", force: bool = False) -> Deferred:
        if self._stopping:
            return succeed(dict(SHUTTING_DOWN))
        self._reasons.append(reason)
        if instruction and instruction not in self._instructions:
            self._instructions.append(instruction)
        self._force = self._force or force
        # The loop gathers the requests of one reactor turn, and those made
        # while a beat runs, into one beat; each caller gets its own copy.
        return self.loop.call_soon().addCallback(lambda record: dict(record or SHUTTING_DOWN))

    def _beat_requested(self) -> Deferred:
        """One beat for every request since the last one began (none: the timer's)."""
        reasons, instructions, force = sorted(set(self._reasons)) or ["interval"], self._instructions, self._force
        self._reasons, self._instructions, self._force = [], [], False
        record: dict[str, Any] = {"verdict": "skipped", "reason": ",".join(reasons), "actions": [], "tool_calls": 0}
        if instructions:
            record["instruction"] = "\n".join(instructions)
        action = begin(HEARTBEAT_BEAT, reason=record["reason"], forced=force)
        with action.context():
            d = DeferredContext(self._beat(record, force))
            d.addCallback(lambda _: record)
            d.addActionFinish()
        return d.result.addCallbacks(self._finished, self._broken)

    @inlineCallbacks
    def _claimed(self, started: float) -> Any:
        """Whether this beat may run: its start written by the scheduler's holder (always, alone)."""
        if self.claim is None:
            return True
        try:
            yield self.claim(LAST_KEY, {"started": started})
        except Exception:  # noqa: BLE001 - fenced, or the store failed: no beat this time
            return False
        return True

    def _finished(self, record: dict[str, Any]) -> dict[str, Any]:
        if not self._stopping and self.every > 0 and record["verdict"] in ("ok", "acted"):
            self._set_deadline(self.clock.seconds())
        return record

    @staticmethod
    def _broken(failure: Any) -> dict[str, Any]:
        """A bug in the beat itself: recorded as failed; the loop goes on."""
        log(HEARTBEAT_ERROR, level="error", error=failure.getErrorMessage())
        return {"verdict": "failed", "error": failure.getErrorMessage()}

    # One beat

    @inline_callbacks
    def _beat(self, record: dict[str, Any], force: bool) -> Any:
        """Run one beat, filling in ``record`` (eliot's generators drop return values)."""
        started = self.clock.seconds()
        try:
            if not force and not in_active_hours(started, self.config.active_hours, self.tz):
                record["skipped"] = "outside active hours"
            elif not (yield self._claimed(started)):
                record["skipped"] = "another instance holds the scheduler"
            else:
                snapshot = yield self.snapshotter.take()
                record["digest"] = digest(snapshot)
                reported = fresh((yield self.store.get_state(REPORTED_KEY)) or {}, started)
                if self.brain.name == "rules":
                    yield self._rules(snapshot, reported, record)
                else:
                    yield self._ask_model(snapshot, reported, record.get("instruction", ""), record)
        except Exception as e:  # noqa: BLE001 - a failed beat is recorded; the owner hears nothing
            record["verdict"] = "failed"
            record["error"] = f"{type(e).__name__}: {e}"[:500]
            log(HEARTBEAT_FAILED, level="error", error=record["error"])
        finished = self.clock.seconds()
        record["duration"] = round(finished - started, 3)
        metrics.heartbeat_runs.labels(record["verdict"]).inc()
        if record["verdict"] in ("ok", "acted"):
            self.runtime.heartbeat(finished)
        try:
            yield self.store.append_journal("heartbeat", started, record)
        except Exception as e:  # noqa: BLE001 - the beat happened even if its record did not stick
            log(HEARTBEAT_JOURNAL_FAILED, level="error", error=repr(e))
        record["timestamp"] = started
        self.last = record
        event = {"verdict": record["verdict"], "timestamp": started, "actions": record["actions"]}
        if "message" in record:
            event["text"] = record["message"]
        self.push(SESSION, "heartbeat", event)

    def _read_checklist(self) -> str:
        try:
            with open(self.checklist_path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @inlineCallbacks
    def _rules(self, snapshot: dict, reported: dict[str, dict], record: dict) -> Any:
        """
        No model: findings not yet told become one alert; cleared ones are
        forgotten.  The record says what was checked and which checklist
        items (and instruction) went unread for want of a model.
        """
        now = self.clock.seconds()
        record["checked"] = rules_checked(snapshot)
        items = checklist_items(self._read_checklist())
        if items:
            record["not_acted_on"] = items
        if items or record.get("instruction"):
            record["note"] = ("no model is configured (brain.providers), so the rules heartbeat does not read "
                              "HEARTBEAT.md" + (" or the instruction" if record.get("instruction") else "")
                              + "; it checks only what is listed under checked")
        found = findings(snapshot)
        kept = {k: v for k, v in reported.items() if not k.startswith(FINDING_PREFIXES) or k in found}
        new = {k: text for k, text in found.items() if k not in kept}
        record["verdict"] = "ok"
        if new:
            yield self._deliver(finding_message(new), record)
            kept.update({k: {"at": now, "text": text} for k, text in new.items()})
        record["repeated"] = len(found) - len(new)
        if kept != reported:
            yield self.store.set_state(REPORTED_KEY, kept)

    @inlineCallbacks
    def _ask_model(self, snapshot: dict, reported: dict[str, dict], instruction: str, record: dict) -> Any:
        prompt = build_prompt(snapshot, self._read_checklist(), reported, instruction, self.tz)
        reply = yield self.brain.respond(BrainRequest(session_id=SESSION, text=prompt))
        for kind, count in reply.usage.items():
            metrics.brain_tokens.labels(reply.provider, kind).inc(count)
        record["provider"] = reply.provider
        record["tool_calls"] = reply.tool_calls
        if reply.tool_calls:
            record["actions"].append(f"tool_calls:{reply.tool_calls}")
        record["verdict"] = "acted" if reply.tool_calls else "ok"
        message = "" if is_heartbeat_ok(reply.text) else strip_token(reply.text)
        if not message:
            return
        key = _text_key(message)
        if key in reported:
            record["repeated"] = 1
            return
        yield self._deliver(message, record)
        reported[key] = {"at": self.clock.seconds(), "text": message[:200]}
        yield self.store.set_state(REPORTED_KEY, reported)

    @inlineCallbacks
    def _deliver(self, message: str, record: dict) -> Any:
        """Tell the owner; the dedupe key makes a retry after a crash in the same window a no-op."""
        window = int(self.clock.seconds() // REMIND_AFTER)
        session = yield self.notifier.notify(
            "info", "heartbeat", message, dedupe_key=f"heartbeat:{_text_key(message)}:{window}",
            target=self.config.target)
        record["verdict"] = "acted"
        record["message"] = message
        record["actions"].append(f"notify:{session}")

    # Gateway

    def status(self) -> dict[str, Any]:
        """The ``heartbeat.status`` payload, and the heartbeat's part of ``/health``."""
        hours = self.config.active_hours
        return {
            "last": health.iso(self.runtime.last_heartbeat),
            "next": health.iso(self.next_beat()),
            "overdue": self.overdue(),
            "running": self.loop.busy,
            "last_verdict": self.last["verdict"] if self.last else None,
            "every": self.every,
            "active_hours": {"start": hours.start, "end": hours.end} if hours else None,
            "timezone": self.config.timezone or local_time(self.clock.seconds(), self.tz).tzname() or "",
        }


#: ``heartbeat.history``: the beats of the last day, the newest at most.
HISTORY_SPAN, MAX_HISTORY = 86400.0, 100


def heartbeat_methods(service: HeartbeatService) -> dict[str, Callable[[Any, dict], Any]]:
    """``heartbeat.run`` ({instruction?} -> the beat's record), ``heartbeat.status`` and ``heartbeat.history``."""

    def run(conn: Any, params: dict) -> Deferred:
        instruction = params.get("instruction", "")
        if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION:
            raise FrameError(frames.INVALID_FIELD,
                             f"field 'instruction' must be a string of at most {MAX_INSTRUCTION} characters")
        return service.beat_now(instruction)

    def recent(conn: Any, params: dict) -> Deferred:
        since = service.clock.seconds() - HISTORY_SPAN
        return service.store.journal("heartbeat", since).addCallback(lambda rows: {"beats": [
            {"timestamp": r["timestamp"], **r["payload"]} for r in rows[-MAX_HISTORY:]]})

    return {"heartbeat.run": run, "heartbeat.status": lambda conn, params: service.status(), "heartbeat.history": recent}
