"""
The morning report: what happened on one local day, read from the store.

``collect`` gathers exact figures; ``render_markdown`` and ``render_html``
are pure functions of them.  ``Reporter`` writes
``<home>/reports/YYYY-MM-DD.md`` and ``.html`` and sends the markdown to the
owner.  With a model brain a summary paragraph goes on top; when the model
fails or is slow the report goes out without it, since the figures below
stand on their own.
"""

from __future__ import annotations

import html
import math
import os
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime

from openclaw import metrics
from openclaw.agent.base import BrainRequest
from openclaw.eliotutil import log, message_type, typed
from openclaw.proactive.schedule import instant, wall, zone

#: Messages of a session's history read to see whether it was active on a
#: day it was not last active (its history keeps at most this many anyway).
HISTORY_PROBE = 200
#: What a model brain is asked for the summary on top; the report follows.
SUMMARY_PROMPT = (
    "Below is yesterday's report of the assistant daemon that watches the owner's systems. "
    "Write two or three plain sentences for the owner: what needs attention first, else that "
    "all was well. Do not repeat the tables.\n\n"
)
#: Colours of the chart's lines, one per check, in turn.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


REPORT_WRITTEN = message_type("openclaw:report:written", [
    typed("day", [str], "the report's day"), typed("path", [str], "where it was written"),
    typed("summary", [bool], "the model's summary is in it"),
], "a morning report was written")
REPORT_SUMMARY_FAILED = message_type("openclaw:report:summary-failed", [typed("error", [str], "why")],
                                     "the model's summary was left out", "warn")


@dataclass(frozen=True)
class CheckDay:
    """One check's probes of the day; ``points`` are ``(instant, latency)``."""

    name: str
    probes: int
    ok: int
    p95: float | None
    points: tuple[tuple[float, float], ...]

    @property
    def uptime(self) -> float:
        return 100.0 * self.ok / self.probes


@dataclass(frozen=True)
class Alert:
    at: str  # local HH:MM
    kind: str  # alert or recovery
    source: str
    message: str


@dataclass(frozen=True)
class ReportData:
    day: date
    start: float
    end: float
    messages: dict[str, dict[str, int]]
    sessions_active: int
    sessions_total: int
    alerts: tuple[Alert, ...]
    checks: tuple[CheckDay, ...]
    heartbeats: dict[str, int]
    restarts: tuple[str, ...]  # local HH:MM of each start
    ticks: tuple[tuple[float, str], ...]  # the chart's time axis: every 6 local hours


def day_bounds(day: date, tz: tzinfo) -> tuple[float, float]:
    """The instants of local midnight starting ``day`` and the next (23 to 25 hours apart)."""
    return (instant(datetime.combine(day, time()), tz),
            instant(datetime.combine(day + timedelta(days=1), time()), tz))


def p95(values: list[float]) -> float | None:
    """The 95th percentile by nearest rank: a latency some probe really had."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@inlineCallbacks
def collect(store: Any, day_start: float, day_end: float, tz: tzinfo = timezone.utc) -> Any:
    """:return: a Deferred firing with the ``ReportData`` of ``[day_start, day_end)``."""

    def local(t: float) -> str:
        return wall(t, tz).strftime("%H:%M")

    @inlineCallbacks
    def journal(kind: str) -> Any:
        rows = yield store.journal(kind, day_start)
        return [r for r in rows if r["timestamp"] < day_end]

    messages = yield store.message_counts(day_start, day_end)
    sessions = yield store.sessions()
    known = [s for s in sessions if s["first_seen"] < day_end]
    active = 0
    for s in known:
        if s["last_active"] < day_start:
            continue
        if s["last_active"] < day_end:
            active += 1
            continue
        # Active since: look for a message of that day in its history.
        history = yield store.history(s["session_id"], HISTORY_PROBE)
        active += any(day_start <= m["timestamp"] < day_end for m in history)

    alerts = tuple(
        Alert(local(r["timestamp"]), r["payload"]["kind"], str(r["payload"].get("check") or ""),
              str(r["payload"].get("message") or ""))
        for r in (yield journal("alert")) if r["payload"].get("kind") in ("alert", "recovery"))

    probes: dict[str, list[dict]] = {}
    for r in (yield journal("check")):
        probes.setdefault(str(r["payload"].get("check")), []).append(r)
    checks = []
    for name, rows in sorted(probes.items()):
        points = tuple((r["timestamp"], float(r["payload"]["latency"])) for r in rows
                       if isinstance(r["payload"].get("latency"), (int, float)))
        checks.append(CheckDay(name=name, probes=len(rows), ok=sum(bool(r["payload"].get("ok")) for r in rows),
                               p95=p95([latency for _, latency in points]), points=points))

    heartbeats = Counter(str(r["payload"].get("verdict", "unknown")) for r in (yield journal("heartbeat")))
    restarts = tuple(local(r["timestamp"]) for r in (yield journal("startup")))
    midnight = wall(day_start, tz)
    ticks = tuple((instant(midnight + timedelta(hours=h), tz), f"{h:02d}:00") for h in (0, 6, 12, 18))
    return ReportData(
        day=midnight.date(), start=day_start, end=day_end, messages=messages, sessions_active=active,
        sessions_total=len(known), alerts=alerts, checks=tuple(checks), heartbeats=dict(heartbeats),
        restarts=restarts, ticks=ticks + ((day_end, "24:00"),))


# Rendering: both formats render the same sections.

@dataclass(frozen=True)
class _Section:
    title: str
    head: tuple[str, ...] = ()  # a table: first column text, the others numbers
    rows: tuple[tuple[str, ...], ...] = ()
    text: str = ""
    items: tuple[str, ...] = ()
    chart: bool = False


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _sections(data: ReportData) -> list[_Section]:
    channels = sorted(data.messages.items())
    total = {k: sum(c[k] for _, c in channels) for k in ("in", "out", "failed")}
    rows = tuple((name, str(c["in"]), str(c["out"]), str(c["failed"])) for name, c in channels)
    sessions = f"Sessions: {data.sessions_active} active, {data.sessions_total} in all."
    raised = sum(a.kind == "alert" for a in data.alerts)
    verdicts = ", ".join(f"{v} {n}" for v, n in sorted(data.heartbeats.items()))
    runs = sum(data.heartbeats.values())
    return [
        _Section("Messages", ("Channel", "In", "Out", "Failed"),
                 rows + (("total", str(total["in"]), str(total["out"]), str(total["failed"])),) if rows else (),
                 sessions if rows else f"No messages. {sessions}"),
        _Section("Alerts", text=f"{raised} raised, {len(data.alerts) - raised} cleared." if data.alerts
                 else "No alerts.",
                 items=tuple(f"{a.at} {a.kind} {a.source}: {a.message}" for a in data.alerts)),
        _Section("Checks", ("Check", "Uptime", "p95 latency", "Probes"),
                 tuple((c.name, f"{c.uptime:.2f}%", _latency(c.p95), str(c.probes)) for c in data.checks),
                 "" if data.checks else "No checks ran.", chart=any(c.points for c in data.checks)),
        _Section("Heartbeats", text=f"{_plural(runs, 'heartbeat')}: {verdicts}." if runs else "No heartbeats."),
        _Section("Outbox", text=f"{_plural(total['failed'], 'message')} failed for good." if total["failed"]
                 else "No delivery failures."),
        _Section("Restarts", text=f"Started {_plural(len(data.restarts), 'time')}: {', '.join(data.restarts)}."
                 if data.restarts else "No restarts."),
    ]


def _line(text: str) -> str:
    """Text on one line: a message's newlines would break the list or table."""
    return " ".join(text.split())


def _cell(text: str) -> str:
    return _line(text).replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(data: ReportData, summary: str = "") -> str:
    out = [f"# Report for {data.day.isoformat()}", ""]
    if summary.strip():
        out += [summary.strip(), ""]
    for s in _sections(data):
        out += [f"## {s.title}", ""]
        if s.rows:
            out.append("| " + " | ".join(s.head) + " |")
            out.append("|---|" + "---:|" * (len(s.head) - 1))
            out += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in s.rows]
            out.append("")
        if s.text:
            out += [s.text, ""]
        if s.items:
            out += [f"- {_line(item)}" for item in s.items] + [""]
    return "\n".join(out)


#: A text's width per character as a share of its font size: a generous
#: guess for a sans-serif, so labels are placed to fit without measuring.
CHAR_WIDTH = 0.62
LEGEND_STEP = 90  # px per legend entry
LEGEND_ROW = 14  # px per legend row


def _tick_anchor(at: float, label: str, font_size: float, width: int) -> str:
    """Centre a tick label on its tick unless that would cut it at an edge of the chart."""
    half = CHAR_WIDTH * font_size * len(label) / 2
    if at - half < 0:
        return "start"
    if at + half > width:
        return "end"
    return "middle"


def _fit(label: str, font_size: float, room: float) -> str:
    """``label``, shortened with an ellipsis to fit ``room`` px."""
    most = max(1, int(room / (CHAR_WIDTH * font_size)))
    return label if len(label) <= most else label[:most - 1] + "\u2026"


def render_chart(data: ReportData, width: int = 640, height: int = 200) -> str:
    """
    An inline SVG of each check's latency over the day: one polyline per
    check, a legend below that wraps onto more rows (the SVG grows) rather
    than running out of the picture.
    """
    left, right, top, bottom = 56, 8, 8, 40
    span = max(data.end - data.start, 1.0)
    peak = max((latency for c in data.checks for _, latency in c.points), default=0.0) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    drawn = [c for c in data.checks if c.points]
    per_row = max(1, (width - left) // LEGEND_STEP)
    rows = max(1, -(-len(drawn) // per_row))
    height += (rows - 1) * LEGEND_ROW

    def x(t: float) -> float:
        return left + plot_w * (t - data.start) / span

    def y(latency: float) -> float:
        return top + plot_h * (1 - latency / peak)

    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img"><title>Check latency on {data.day.isoformat()}</title>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
             f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="10">'
             f'{e(_fit(_latency(peak), 10, left - 4))}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>']
    for t, label in data.ticks:
        parts.append(f'<text x="{x(t):.1f}" y="{top + plot_h + 14}" text-anchor="{_tick_anchor(x(t), label, 10, width)}" '
                     f'font-size="10">{e(label)}</text>')
    for n, check in enumerate(drawn):
        colour = PALETTE[n % len(PALETTE)]
        # A lone sample as a zero-length line: its round cap shows as a dot.
        samples = check.points if len(check.points) > 1 else check.points * 2
        points = " ".join(f"{x(t):.1f},{y(latency):.1f}" for t, latency in samples)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-linecap="round" '
                     f'stroke-linejoin="round" points="{points}">'
                     f'<title>{e(check.name)}</title></polyline>')
        row, column = divmod(n, per_row)
        parts.append(f'<text x="{left + LEGEND_STEP * column}" y="{height - 6 - (rows - 1 - row) * LEGEND_ROW}" '
                     f'font-size="11" fill="{colour}">{e(_fit(check.name, 11, LEGEND_STEP - 6))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: ReportData, summary: str = "") -> str:
    """A self-contained page: no scripts, no external assets; all text escaped."""
    e = html.escape
    title = f"Report for {data.day.isoformat()}"
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           "<style>body{font:15px/1.4 system-ui,sans-serif;max-width:44em;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd}"
           "td+td,th+th{text-align:right}</style></head><body>", f"<h1>{e(title)}</h1>"]
    if summary.strip():
        out.append(f"<p>{e(summary.strip())}</p>")
    for s in _sections(data):
        out.append(f"<h2>{e(s.title)}</h2>")
        if s.chart:
            out.append(render_chart(data))
        if s.rows:
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in s.head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in s.rows]
            out.append("</table>")
        if s.text:
            out.append(f"<p>{e(s.text)}</p>")
        if s.items:
            out.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in s.items) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


# Files

def _day_name(day: Any) -> str | None:
    """``YYYY-MM-DD`` for a date or such a string; None for anything else (no paths)."""
    try:
        return date.fromisoformat(str(day)).isoformat()
    except ValueError:
        return None


def _read(home: str, day: Any, suffix: str) -> bytes | None:
    name = _day_name(day)
    if name is None:
        return None
    try:
        with open(os.path.join(home, "reports", name + suffix), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def report_html(home: str, day: Any) -> bytes | None:
    """The HTML page of a written report (for ``/reports/YYYY-MM-DD``), or None."""
    return _read(home, day, ".html")


def _write(path: str, text: str) -> None:
    """Whole or not at all: a reader never sees half a report."""
    tmp = f"{path}.tmp"
    # 0600 like the rest of the home: a report quotes messages and alerts.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover .tmp from a crash keeps its old mode otherwise
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def brain_summarizer(brain: Any) -> Callable[[str], Any] | None:
    """``Reporter``'s ``summarize`` for a model brain; None for the rules brain (no model)."""
    if brain.name == "rules":
        return None

    def summarize(markdown: str) -> Any:
        d = brain.respond(BrainRequest(session_id="system:report", text=SUMMARY_PROMPT + markdown))

        def answered(reply: Any) -> str:
            for kind, count in reply.usage.items():
                metrics.brain_tokens.labels(reply.provider, kind).inc(count)
            return reply.text

        return d.addCallback(answered)

    return summarize


class Reporter(Service):
    """
    Writes and serves the morning reports; a service of the tree (no I/O at
    start) so the rules brain finds the latest through the tree.

    :param timezone: the zone whose days reports cover (empty: the host's).
    :param summarize: ``(markdown) -> Deferred[str]``: a model's summary, or None.
    """

    def __init__(
        self, clock: IReactorTime, store: Any, notifier: Any, home: str, timezone: str = "",
        summarize: Callable[[str], Any] | None = None, summary_timeout: float = 120.0,
    ) -> None:
        self.clock = clock
        self.store = store
        self.notifier = notifier
        self.home = home
        self.tz = zone(timezone)
        self.summarize = summarize
        self.summary_timeout = summary_timeout

    @inlineCallbacks
    def run(self, day: date, target: str = "") -> Any:
        """
        Write and send the report of ``day`` (to ``target``, else the
        notifier's): a Deferred firing with the markdown file's path.
        """
        name = _day_name(day)
        if name is None:
            raise ValueError(f"not a day: {day!r}")
        day = date.fromisoformat(name)
        data = yield collect(self.store, *day_bounds(day, self.tz), tz=self.tz)
        summary = yield self._summary(render_markdown(data))
        text = render_markdown(data, summary)
        folder = os.path.join(self.home, "reports")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        path = os.path.join(folder, name + ".md")
        _write(os.path.join(folder, name + ".html"), render_html(data, summary))
        _write(path, text)
        yield self.notifier.notify("info", "report", text, dedupe_key=f"report:{name}", target=target)
        log(REPORT_WRITTEN, day=name, path=path, summary=bool(summary))
        return path

    @inlineCallbacks
    def today(self) -> Any:
        """Today's report so far (the zone's day up to now): ``(day, markdown)``; nothing written or sent."""
        day = datetime.fromtimestamp(self.clock.seconds(), self.tz).date()
        data = yield collect(self.store, *day_bounds(day, self.tz), tz=self.tz)
        return day.isoformat(), render_markdown(data)

    def _summary(self, markdown: str) -> Any:
        if self.summarize is None:
            return succeed("")
        d = maybeDeferred(self.summarize, markdown)
        d.addTimeout(self.summary_timeout, self.clock)

        def failed(failure: Any) -> str:
            log(REPORT_SUMMARY_FAILED, level="warn", error=failure.getErrorMessage())
            return ""

        return d.addCallbacks(lambda text: text if isinstance(text, str) else "", failed)

    def days(self) -> list[str]:
        """The days with a written report, oldest first."""
        folder = os.path.join(self.home, "reports")
        return sorted(n[:-3] for n in os.listdir(folder) if n.endswith(".md") and _day_name(n[:-3])) \
            if os.path.isdir(folder) else []

    def get(self, day: Any = None) -> str | None:
        """The markdown of ``day``'s report (default: the latest written), or None."""
        if day is None:
            names = self.days()
            if not names:
                return None
            day = names[-1]
        text = _read(self.home, day, ".md")
        return None if text is None else text.decode("utf-8")
