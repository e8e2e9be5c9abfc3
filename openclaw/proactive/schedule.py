"""
When cron jobs are due: pure functions of (expression, zone, what is
settled, now), unix seconds in and out.

The expression matches local wall-clock time in the job's zone; wall times
map to instants like Vixie cron does across daylight saving changes:

* a wall time the clock skips (spring forward, Berlin 02:30) fires at the
  jump itself (03:00 CEST), so a daily job still runs that day, and every
  skipped wall time fires there once;
* a wall time the clock shows twice (autumn, Berlin 02:30) fires at its
  first occurrence only.

So the due instants are a strictly increasing series, and a job's state
needs one number: ``settled``, the instant up to which every due time has
been run or recorded as missed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Iterator
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

#: Missed due times listed at most per plan; beyond that ``missed_more``.
MISSED_CAP = 1000


def zone(name: str) -> tzinfo:
    """
    The zone ``name``; empty is the host's zone (``$TZ``, else
    ``/etc/localtime``, else UTC) with its DST rules, which a fixed offset
    from ``datetime.astimezone()`` would not have.
    """
    if name:
        return ZoneInfo(name)
    tz = os.environ.get("TZ", "").lstrip(":")
    try:
        if tz.startswith("/"):
            with open(tz, "rb") as f:
                return ZoneInfo.from_file(f)
        if tz:
            return ZoneInfo(tz)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f)
    except (OSError, ValueError, KeyError):  # like libc: an unknown zone is UTC
        return timezone.utc


def wall(instant: float, tz: tzinfo) -> datetime:
    """The naive local wall-clock time at ``instant``."""
    return datetime.fromtimestamp(instant, tz).replace(tzinfo=None)


def instant(local: datetime, tz: tzinfo) -> float:
    """
    The instant a naive wall time fires: its first occurrence, or for a wall
    time inside a DST gap, the instant the clock jumped over it.
    """
    first = local.replace(tzinfo=tz, fold=0).timestamp()
    if wall(first, tz) == local:
        return first
    # In a gap, fold=1 reads the wall time with the offset after the jump
    # (an instant before it) and fold=0 with the one before (after it).
    # Transitions fall on whole seconds: search for the first instant whose
    # wall time is past ``local``.
    lo, hi = int(local.replace(tzinfo=tz, fold=1).timestamp()), int(first) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wall(mid, tz) > local:
            hi = mid
        else:
            lo = mid
    return float(hi)


def due_times(expression: str, tz: tzinfo, after: float) -> Iterator[float]:
    """
    The due instants strictly after ``after``, strictly increasing; ends
    only for an expression that matches no date (``0 0 30 2 *``).
    """
    # ``instant`` never maps a later wall time to an earlier instant, and the
    # wall time at ``after`` fires at or before ``after``: so every due
    # instant past ``after`` comes from a wall time past it.
    times = croniter(expression, wall(after, tz))
    last = after
    while True:
        try:
            t = instant(times.get_next(datetime), tz)
        except CroniterBadDateError:
            return
        if t > last:  # drops the second pass of a repeated hour and gap repeats
            last = t
            yield t


def next_due(expression: str, tz: tzinfo, after: float) -> float | None:
    """The first due instant strictly after ``after`` (None: never)."""
    return next(due_times(expression, tz, after), None)


@dataclass(frozen=True)
class Plan:
    """
    What to do at ``now``.  ``run``: the due time to run now (the latest one
    not past ``grace``); ``missed``: earlier ones, oldest first, to record
    (the first ``MISSED_CAP``, ``missed_more`` when there were more);
    ``next_due``: when to look again.  Afterwards everything up to
    ``max(settled, now)`` is settled.
    """

    run: float | None
    missed: tuple[float, ...]
    missed_more: bool
    next_due: float | None


def plan(expression: str, tz: tzinfo, settled: float, now: float, grace: float) -> Plan:
    """
    Decide for the due times in ``(settled, now]``: the latest runs once if
    ``now - due <= grace``; every other one is missed.  A job never run
    passes the instant it was first seen as ``settled``, so it does not run
    at its first boot.
    """
    run = None
    for t in due_times(expression, tz, max(settled, now - grace - 1)):
        if t > now:
            break
        if now - t <= grace:
            run = t
    missed: list[float] = []
    more = False
    for t in due_times(expression, tz, settled):
        if t > now or t == run:
            break
        if len(missed) == MISSED_CAP:
            more = True
            break
        missed.append(t)
    return Plan(run=run, missed=tuple(missed), missed_more=more,
                next_due=next_due(expression, tz, max(settled, now)))
