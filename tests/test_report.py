"""The morning report from a SQLite store filled with a day of events."""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from openclaw.agent.base import BrainReply, BrainRequest
from openclaw.proactive.report import (
    CHAR_WIDTH,
    SUMMARY_PROMPT,
    CheckDay,
    ReportData,
    Reporter,
    brain_summarizer,
    collect,
    day_bounds,
    p95,
    render_chart,
    render_html,
    render_markdown,
    report_html,
)
from openclaw.store.sqlite import SQLiteStore
from tests.store_contract import alert, message, reply

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2024, 5, 1)


def t(hour: int, minute: int = 0, day: int = 1) -> float:
    """An instant of Berlin local time in May 2024."""
    return datetime(2024, 5, day, hour, minute, tzinfo=BERLIN).timestamp()


class Notifier:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def notify(self, kind: str, source: str, message: str, dedupe_key: str, target: str = "") -> Deferred:
        self.sent.append((kind, source, message, dedupe_key))
        return succeed(None)


@pytest_twisted.async_yield_fixture
async def store(tmp_path) -> Any:
    store = SQLiteStore(reactor, str(tmp_path / "data" / "openclaw.sqlite3"))
    store.startService()
    await fill(store)
    yield store
    await store.stopService()


async def fill(store: SQLiteStore) -> None:
    first = message(session="telegram:1", timestamp=t(8, 5), platform_id=1, text="hello")
    events = [
        first,
        message(session="telegram:1", timestamp=t(9), platform_id=2),
        message(session="telegram:2", timestamp=t(10), platform_id=3),
        message(session="slack:1", source="slack", timestamp=t(11)),
        message(session="slack:1", source="slack", timestamp=t(23, 59, day=1) - 3600 * 24),  # April 30th
        message(session="slack:2", source="slack", timestamp=t(10, day=1) - 3600 * 24),  # only April 30th
        message(session="telegram:2", timestamp=t(7, day=2), platform_id=4),  # the next morning
        message(session="telegram:3", timestamp=t(8, day=2), platform_id=5),  # new the next morning
    ]
    for event in events:
        await store.record_inbound(event)
    (sent,) = await store.complete_inbound(first.id, [reply(first, created_at=t(8, 6))])
    await store.mark_sent(sent)
    lost, _ = await store.enqueue_outbox(alert("lost", created_at=t(12)))
    await store.mark_failed(lost, "blocked by the user")
    journal = [
        ("alert", t(3, 10), {"kind": "alert", "check": "web", "message": "HTTP 500 from <script>x</script>",
                             "session": "telegram:1"}),
        ("alert", t(3, 40), {"kind": "recovery", "check": "web", "message": "back up", "session": "telegram:1"}),
        ("alert", t(9), {"kind": "info", "check": "remind", "message": "not an alert", "session": None}),
        ("alert", t(23, 30, day=2), {"kind": "alert", "check": "db", "message": "the next day", "session": None}),
        ("heartbeat", t(8), {"verdict": "ok"}),
        ("heartbeat", t(12), {"verdict": "acted"}),
        ("heartbeat", t(16), {"verdict": "ok"}),
        ("startup", t(3, 12), {"version": "x"}),
        ("startup", t(0, 0), {"version": "x"}),
        ("startup", t(0, 0, day=2), {"version": "x"}),  # the next day starts here
    ]
    for n in range(20):  # web: one failed probe in 20; db: no latency when it failed
        journal.append(("check", t(0, 30) + n * 3600, {"check": "web", "ok": n != 3, "latency": 0.01 * (n + 1),
                                                       "detail": ""}))
    journal.append(("check", t(1), {"check": "db", "ok": True, "latency": 1.5, "detail": ""}))
    journal.append(("check", t(2), {"check": "db", "ok": False, "latency": None, "detail": "refused"}))
    for kind, when, payload in journal:
        await store.append_journal(kind, when, payload)


EXPECTED = """\
# Report for 2024-05-01

## Messages

| Channel | In | Out | Failed |
|---|---:|---:|---:|
| slack | 1 | 0 | 0 |
| telegram | 3 | 1 | 1 |
| total | 4 | 1 | 1 |

Sessions: 3 active, 4 in all.

## Alerts

1 raised, 1 cleared.

- 03:10 alert web: HTTP 500 from <script>x</script>
- 03:40 recovery web: back up

## Checks

| Check | Uptime | p95 latency | Probes |
|---|---:|---:|---:|
| db | 50.00% | 1.50 s | 2 |
| web | 95.00% | 190 ms | 20 |

## Heartbeats

3 heartbeats: acted 1, ok 2.

## Outbox

1 message failed for good.

## Restarts

Started 2 times: 00:00, 03:12.
"""


@pytest_twisted.inlineCallbacks
def test_markdown_of_a_day(store: SQLiteStore) -> Any:
    start, end = day_bounds(DAY, BERLIN)
    assert (start, end) == (t(0), t(0, day=2))
    data = yield collect(store, start, end, BERLIN)
    assert render_markdown(data) == EXPECTED
    assert render_markdown(data, "A calm day.\n").startswith("# Report for 2024-05-01\n\nA calm day.\n\n## Messages")


@pytest_twisted.inlineCallbacks
def test_html_has_a_chart_and_escapes_text(store: SQLiteStore) -> Any:
    data = yield collect(store, *day_bounds(DAY, BERLIN), BERLIN)
    page = render_html(data, summary="Tom & Jerry <b>")
    assert page.startswith("<!doctype html>") and "<svg" in page and "</svg>" in page
    assert page.count("<polyline") == 2
    assert "<script>" not in page and "HTTP 500 from &lt;script&gt;x&lt;/script&gt;" in page
    assert "Tom &amp; Jerry &lt;b&gt;" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no external assets
    for label in ("00:00", "06:00", "12:00", "18:00", "24:00"):
        assert f">{label}</text>" in page


def text_extents(svg: str) -> list[tuple[str, float, float, float, float]]:
    """``(text, left, right, top, bottom)`` of each <text>, at CHAR_WIDTH per character."""
    root = ElementTree.fromstring(svg)
    boxes = []
    for node in root.iter("{http://www.w3.org/2000/svg}text"):
        size, at, baseline = float(node.get("font-size")), float(node.get("x")), float(node.get("y"))
        wide = CHAR_WIDTH * size * len(node.text)
        shift = {"start": 0.0, "middle": wide / 2, "end": wide}[node.get("text-anchor", "start")]
        boxes.append((node.text, at - shift, at - shift + wide, baseline - size, baseline))
    return boxes


def chart_data(names: list[str], latency: float) -> ReportData:
    start, end = day_bounds(DAY, BERLIN)
    ticks = tuple((start + h * 3600, f"{h:02d}:00") for h in (0, 6, 12, 18)) + ((end, "24:00"),)
    checks = tuple(CheckDay(name, 2, 2, latency, ((start + 60, latency), (end - 60, latency / 2))) for name in names)
    return ReportData(DAY, start, end, {}, 0, 0, (), checks, {}, (), ticks)


@given(st.lists(st.text(st.characters(codec="ascii", categories=("L", "N", "P")), min_size=1, max_size=40),
                max_size=15),
       st.floats(0.0005, 1e5))
def test_chart_text_stays_inside_the_picture(names: list[str], latency: float) -> None:
    svg = render_chart(chart_data(names, latency))
    root = ElementTree.fromstring(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width:g} {height:g}"
    for text, left, right, top, bottom in text_extents(svg):
        assert 0 <= left and right <= width and 0 <= top and bottom <= height, (text, left, right, top, bottom)


def test_chart_edge_labels_are_anchored_inside() -> None:
    """The "24:00" tick sits on the right edge: centred, its second half would be cut off."""
    boxes = {text: (left, right) for text, left, right, _, _ in text_extents(render_chart(chart_data(["web"], 1.0)))}
    assert boxes["24:00"][1] <= 640 < boxes["24:00"][1] + CHAR_WIDTH * 10 * len("24:00") / 2


def test_a_day_of_dst_change_has_23_or_25_hours() -> None:
    spring, autumn = day_bounds(date(2024, 3, 31), BERLIN), day_bounds(date(2024, 10, 27), BERLIN)
    assert spring[1] - spring[0] == 23 * 3600 and autumn[1] - autumn[0] == 25 * 3600


def test_p95_is_a_latency_some_probe_had() -> None:
    assert p95([]) is None
    assert p95([0.3]) == 0.3
    assert p95([float(n) for n in range(1, 101)]) == 95.0
    assert p95([float(n) for n in range(20, 0, -1)]) == 19.0


@pytest_twisted.inlineCallbacks
def test_reporter_writes_sends_and_serves(store: SQLiteStore, tmp_path) -> Any:
    notifier = Notifier()
    summaries = []

    def summarize(markdown: str) -> Deferred:
        summaries.append(markdown)
        return succeed("Mostly quiet; one web outage.")

    reporter = Reporter(reactor, store, notifier, str(tmp_path), "Europe/Berlin", summarize=summarize)
    path = yield reporter.run(DAY)
    assert path == os.path.join(str(tmp_path), "reports", "2024-05-01.md")
    assert summaries == [EXPECTED]
    for name in ("2024-05-01.md", "2024-05-01.html"):  # 0600 whatever the umask, like the rest of the home
        assert os.stat(os.path.join(str(tmp_path), "reports", name)).st_mode & 0o777 == 0o600
    text = EXPECTED.replace("\n\n## Messages", "\n\nMostly quiet; one web outage.\n\n## Messages", 1)
    with open(path, encoding="utf-8") as f:
        assert f.read() == text
    assert notifier.sent == [("info", "report", text, "report:2024-05-01")]
    assert reporter.get("2024-05-01") == reporter.get() == text
    assert reporter.get("2024-04-30") is None
    page = report_html(str(tmp_path), "2024-05-01")
    assert page is not None and b"<svg" in page and b"Mostly quiet" in page
    assert report_html(str(tmp_path), "../data/openclaw") is None
    assert reporter.get("../../etc/passwd") is None


@pytest_twisted.inlineCallbacks
def test_a_failing_summary_leaves_it_out(store: SQLiteStore, tmp_path) -> Any:
    reporter = Reporter(reactor, store, Notifier(), str(tmp_path), "Europe/Berlin",
                        summarize=lambda markdown: fail(RuntimeError("model down")))
    path = yield reporter.run(DAY)
    with open(path, encoding="utf-8") as f:
        assert f.read() == EXPECTED


def test_a_slow_summary_is_given_up_on() -> None:
    clock = Clock()
    reporter = Reporter(clock, None, Notifier(), "/nonexistent", summarize=lambda markdown: Deferred(),
                        summary_timeout=30)
    d = reporter._summary("# Report")
    clock.advance(29)
    assert not d.called
    clock.advance(1)
    assert d.result == ""


def test_a_model_brain_summarizes_and_the_rules_brain_does_not() -> None:
    asked = []

    class Brain:
        name = "openai:gpt-4o-mini"

        def respond(self, request: BrainRequest) -> Deferred:
            asked.append(request)
            return succeed(BrainReply(text="All quiet.", provider="openai", usage={"input_tokens": 5}))

    summarize = brain_summarizer(Brain())
    d = summarize("# Report for 2024-05-01")
    assert d.result == "All quiet."
    assert asked[0].text == SUMMARY_PROMPT + "# Report for 2024-05-01" and asked[0].history == []
    Brain.name = "rules"
    assert brain_summarizer(Brain()) is None


def test_no_reports_yet(tmp_path) -> None:
    assert Reporter(Clock(), None, Notifier(), str(tmp_path)).get() is None
    assert report_html(str(tmp_path), "2024-05-01") is None
