"""Cron due times: DST in real zones, missed runs and grace, restarts."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openclaw.proactive.schedule import (
    MISSED_CAP,
    due_times,
    instant,
    next_due,
    plan,
    zone,
)
from tests.strategies import cron_expressions, dst_starts

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
ZONES = (BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), timezone.utc)  # Lord Howe: a 30-minute shift


def at(tz, *fields, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=tz, fold=fold).timestamp()


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")


def dues(expression: str, tz, after: float, n: int) -> list[str]:
    return [utc(t) for t in islice(due_times(expression, tz, after), n)]


def test_berlin_spring_forward_runs_a_skipped_time_at_the_jump() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never shows.
    assert dues("30 2 * * *", BERLIN, at(BERLIN, 2024, 3, 30, 12), 3) == [
        "2024-03-31 01:00", "2024-04-01 00:30", "2024-04-02 00:30"]
    # Every half hour: 02:00 and 02:30 both fall in the gap and fire once, at 03:00 CEST.
    assert dues("*/30 * * * *", BERLIN, at(BERLIN, 2024, 3, 31, 1, 0), 4) == [
        "2024-03-31 00:30", "2024-03-31 01:00", "2024-03-31 01:30", "2024-03-31 02:00"]


def test_berlin_autumn_runs_a_repeated_time_once() -> None:
    # 2024-10-27: 03:00 CEST falls back to 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
    assert dues("30 2 * * *", BERLIN, at(BERLIN, 2024, 10, 26, 12), 2) == ["2024-10-27 00:30", "2024-10-28 01:30"]
    assert dues("0 * * * *", BERLIN, at(BERLIN, 2024, 10, 27, 1, 30), 3) == [
        "2024-10-27 00:00", "2024-10-27 02:00", "2024-10-27 03:00"]


def test_a_restart_during_the_repeated_hour_does_not_run_it_again() -> None:
    first = at(BERLIN, 2024, 10, 27, 2, 30)
    ran = plan("30 2 * * *", BERLIN, first - 60, first + 5, 3600)
    assert ran.run == first
    # Down, and up again in the second 02:40 (01:40 UTC): nothing is due.
    second = at(BERLIN, 2024, 10, 27, 2, 40, fold=1)
    assert second - first == 3600 + 600
    again = plan("30 2 * * *", BERLIN, first + 5, second, 3600)
    assert (again.run, again.missed) == (None, ())
    assert utc(again.next_due) == "2024-10-28 01:30"


def test_new_york_transitions() -> None:
    # 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    assert dues("30 2 * * *", NEW_YORK, at(NEW_YORK, 2024, 3, 9, 12), 2) == ["2024-03-10 07:00", "2024-03-11 06:30"]
    # 2024-11-03: 01:30 happens at 05:30 and 06:30 UTC; it fires at the first.
    assert dues("30 1 * * *", NEW_YORK, at(NEW_YORK, 2024, 11, 2, 12), 2) == ["2024-11-03 05:30", "2024-11-04 06:30"]


def test_instant_of_a_wall_time_in_a_gap_is_the_jump() -> None:
    jump = at(timezone.utc, 2024, 3, 31, 1, 0)
    for minute in (0, 1, 30, 59):
        assert instant(datetime(2024, 3, 31, 2, minute), BERLIN) == jump
    assert instant(datetime(2024, 3, 31, 3, 0), BERLIN) == jump
    assert instant(datetime(2024, 3, 31, 1, 59), BERLIN) == jump - 60


def test_first_boot_does_not_run() -> None:
    now = at(BERLIN, 2024, 5, 2, 9, 0)  # exactly due, but first seen now
    decision = plan("0 9 * * *", BERLIN, now, now, 3600)
    assert (decision.run, decision.missed, decision.next_due) == (None, (), at(BERLIN, 2024, 5, 3, 9))


def test_a_run_missed_while_down_runs_once_within_grace() -> None:
    settled = at(BERLIN, 2024, 5, 1, 9, 0, 5)
    decision = plan("0 9 * * *", BERLIN, settled, at(BERLIN, 2024, 5, 2, 9, 59), 3600)
    assert (decision.run, decision.missed) == (at(BERLIN, 2024, 5, 2, 9), ())
    # Exactly at the end of the grace it still runs; a second later it is missed.
    assert plan("0 9 * * *", BERLIN, settled, at(BERLIN, 2024, 5, 2, 10), 3600).run == at(BERLIN, 2024, 5, 2, 9)
    late = plan("0 9 * * *", BERLIN, settled, at(BERLIN, 2024, 5, 2, 10, 0, 1), 3600)
    assert (late.run, late.missed) == (None, (at(BERLIN, 2024, 5, 2, 9),))
    assert late.next_due == at(BERLIN, 2024, 5, 3, 9)


def test_only_the_latest_of_several_missed_runs_runs() -> None:
    decision = plan("0 * * * *", timezone.utc, at(timezone.utc, 2024, 5, 1, 3, 10),
                    at(timezone.utc, 2024, 5, 1, 8, 20), 3600)
    assert decision.run == at(timezone.utc, 2024, 5, 1, 8)
    assert decision.missed == tuple(at(timezone.utc, 2024, 5, 1, h) for h in range(4, 8))


def test_a_long_outage_lists_at_most_the_cap() -> None:
    decision = plan("* * * * *", timezone.utc, 0.0, 2 * 86400.0, 60)
    assert len(decision.missed) == MISSED_CAP and decision.missed_more
    assert decision.run == 2 * 86400.0


def test_a_clock_that_went_back_never_repeats_a_settled_due_time() -> None:
    settled = at(timezone.utc, 2024, 5, 2, 9, 30)
    decision = plan("0 9 * * *", timezone.utc, settled, settled - 3 * 3600, 3600)
    assert (decision.run, decision.missed) == (None, ())
    assert decision.next_due == at(timezone.utc, 2024, 5, 3, 9)


def test_an_expression_matching_no_date_is_never_due() -> None:
    assert next_due("0 0 30 2 *", timezone.utc, 0.0) is None
    assert plan("0 0 30 2 *", timezone.utc, 0.0, 10**9, 60).next_due is None


def test_the_host_zone_keeps_its_dst_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert zone("").utcoffset(datetime(2024, 7, 1)).total_seconds() == -4 * 3600
    assert zone("").utcoffset(datetime(2024, 1, 1)).total_seconds() == -5 * 3600
    monkeypatch.setenv("TZ", ":/usr/share/zoneinfo/Europe/Berlin")
    assert zone("").utcoffset(datetime(2024, 7, 1)).total_seconds() == 2 * 3600
    monkeypatch.setenv("TZ", "Nowhere/Bogus")
    assert zone("") == timezone.utc
    assert zone("Europe/Berlin") == BERLIN


# Properties over expressions, zones and outages around 2024's DST changes.
@settings(max_examples=150, deadline=None)
@given(cron_expressions(), st.sampled_from(ZONES), dst_starts())
def test_due_times_are_strictly_increasing_and_after_the_start(expression, tz, start) -> None:
    times = list(islice(due_times(expression, tz, start), 60))
    assert times and times[0] > start
    assert all(a < b for a, b in zip(times, times[1:]))
    assert next_due(expression, tz, start) == times[0]
    # Resuming from any due time continues the same series.
    assert list(islice(due_times(expression, tz, times[10]), 20)) == times[11:31]


@settings(max_examples=80, deadline=None)
@given(cron_expressions(), st.sampled_from(ZONES), dst_starts(),
       st.lists(st.floats(0, 1.5 * 86400), min_size=1, max_size=5), st.sampled_from([60.0, 3600.0, 86400.0]))
def test_across_restarts_every_due_time_runs_or_is_missed_exactly_once(expression, tz, first_seen, gaps, grace):
    settled, now, seen = first_seen, first_seen, []
    for gap in gaps:
        now += gap
        decision = plan(expression, tz, settled, now, grace)
        assert not decision.missed_more
        if decision.run is not None:
            assert 0 <= now - decision.run <= grace
        assert all(now - t > grace or (decision.run is not None and t < decision.run) for t in decision.missed)
        seen += [*decision.missed, *([decision.run] if decision.run is not None else [])]
        settled = max(settled, now)
        assert decision.next_due > now
    assert seen == list(takewhile(lambda t: t <= now, due_times(expression, tz, first_seen)))
