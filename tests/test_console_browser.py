"""
The web console in a real browser: Debian's Chromium, headless, driven by
Playwright's sync API, against a real daemon (the whole tree, in this
process) and local fake platforms.

Playwright's sync API belongs to the thread that started it, and the
reactor must keep serving the daemon while the browser waits, so the
browser lives on one thread of its own for the whole module; each step is
a function run there (``Browser.run``) that the test waits for as a
Deferred.  Every test ends by checking that the page logged no error and
asked no host but the daemon.

Screenshots of every page at desktop and phone widths go to
``$CONSOLE_SCREENSHOTS`` (else a temporary directory; the path is printed);
with ``OPENCLAW_DOC_SCREENSHOTS=1`` the overview and chat pairs are also
written to docs/console/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config
from tests.telegram_server import TOKEN, BotAPI, text_update
from tests.waiting import until

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")
DESKTOP, PHONE = {"width": 1280, "height": 860}, {"width": 390, "height": 844}
PAGES = ("overview", "chat", "checks", "schedule", "reports", "access", "logs", "instances")
#: A ceiling for one browser step (the page is live: it needs no more than a few seconds).
STEP = 15_000


class Browser:
    """One headless Chromium on one thread for the module."""

    def __init__(self) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")
        self.thread.submit(self._start).result(timeout=60)

    def _start(self) -> None:
        self.playwright = sync_api.sync_playwright().start()
        self.chromium = self.playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=30_000)

    def run(self, step: Callable[..., Any], *args: Any) -> defer.Deferred:
        """Run ``step(*args)`` on the browser's thread; a Deferred of its result."""
        d: defer.Deferred = defer.Deferred()

        def done(future: Any) -> None:
            error = future.exception()
            reactor.callFromThread(d.errback if error else d.callback, error or future.result())

        self.thread.submit(step, *args).add_done_callback(done)
        return d

    def close(self) -> None:
        def stop() -> None:
            self.chromium.close()
            self.playwright.stop()

        self.thread.submit(stop).result(timeout=60)
        self.thread.shutdown()


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


class Tab:
    """A fresh browser context on a daemon's console, recording what the page asks for and logs."""

    def __init__(self, browser: Browser, daemon: RunningDaemon, viewport: dict = DESKTOP, scheme: str = "light") -> None:
        self.browser = browser
        self.daemon = daemon
        self.viewport = viewport
        self.scheme = scheme
        self.hosts: set[str] = set()
        self.problems: list[str] = []
        self.responses: dict[str, Any] = {}

    def open(self) -> None:
        self.context = self.browser.chromium.new_context(viewport=self.viewport, color_scheme=self.scheme)
        self.context.set_default_timeout(STEP)
        self.page = page = self.context.new_page()
        page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))
        page.on("websocket", lambda ws: self.hosts.add(urlsplit(ws.url).netloc))
        page.on("response", lambda r: self.responses.setdefault(urlsplit(r.url).path, r.headers))
        page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def run(self, step: Callable[..., Any], *args: Any) -> defer.Deferred:
        return self.browser.run(step, self, *args)

    def close(self) -> None:
        self.context.close()

    def clean(self) -> None:
        """No console error, no exception, and no host asked but the daemon's two ports."""
        assert self.problems == []
        daemon = self.daemon
        assert self.hosts <= {f"127.0.0.1:{daemon.web_port}", f"127.0.0.1:{daemon.gateway_port}"}, self.hosts


@pytest_twisted.async_yield_fixture
async def tabs(browser):
    opened: list[Tab] = []

    async def tab(daemon: RunningDaemon, viewport: dict = DESKTOP, scheme: str = "light") -> Tab:
        t = Tab(browser, daemon, viewport, scheme)
        await browser.run(t.open)
        opened.append(t)
        return t

    yield tab
    for t in opened:
        await browser.run(t.close)


# Steps (run on the browser's thread)

def sign_in(tab: Tab, token: str) -> None:
    page = tab.page
    page.goto(tab.daemon.url("/console/"))
    page.fill("#token", token)
    page.click("#login-form button")


def signed_in(tab: Tab) -> None:
    tab.page.wait_for_selector("#ov-status")
    tab.page.evaluate("window.stillThisPage = true")  # a reload would lose it


def not_reloaded(tab: Tab) -> bool:
    return tab.page.evaluate("window.stillThisPage === true")


def go(tab: Tab, name: str) -> None:
    tab.page.click(f"[data-nav={name}]")
    tab.page.wait_for_selector(f"#page-{name}:not([hidden])")


def wait_text(tab: Tab, selector: str, text: str) -> str:
    locator = tab.page.locator(selector).filter(has_text=text).first
    locator.wait_for()
    return locator.inner_text()


def ask_status(tab: Tab) -> str:
    """Send ``/status`` from the chat page; the rules brain's reply."""
    go(tab, "chat")
    tab.page.fill("#chat-text", "/status")
    tab.page.press("#chat-text", "Enter")
    return wait_text(tab, "#chat-log li.assistant", "status:")


@defer.inlineCallbacks
def open_console(tabs: Any, daemon: RunningDaemon, viewport: dict = DESKTOP) -> Any:
    tab = yield tabs(daemon, viewport)
    yield tab.run(sign_in, daemon.token)
    yield tab.run(signed_in)
    return tab


def tcp_listener() -> Any:
    return reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")


def telegram_daemon(home: str, api: BotAPI, **telegram: Any) -> RunningDaemon:
    config = daemon_config(connectors={"telegram": {
        "enabled": True, "api_url": api.url, "poll_timeout": 1, "backoff_max": 1, **telegram}}, heartbeat={"every": 0})
    return RunningDaemon(home, config, environ={"TELEGRAM_BOT_TOKEN": TOKEN})


# Tests

@pytest_twisted.inlineCallbacks
def test_the_login_refuses_a_wrong_token_and_accepts_the_right_one(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    try:
        tab = yield tabs(daemon)
        yield tab.run(sign_in, "not-the-token")
        refused = yield tab.run(wait_text, "#login-error", "wrong")
        app_hidden = yield tab.run(lambda t: t.page.is_hidden("#app"))
        yield tab.run(sign_in, daemon.token)
        yield tab.run(signed_in)
        stored = yield tab.run(lambda t: t.page.evaluate("sessionStorage.getItem('openclaw.console.token')"))
        yield tab.run(lambda t: (t.page.reload(), t.page.wait_for_selector("#ov-status")))
        status = yield tab.run(lambda t: t.page.inner_text("#ov-status"))
    finally:
        yield daemon.stop()
    assert refused == "That token is wrong." and app_hidden
    assert stored == daemon.token and status == "ready"  # the tab keeps its session over a reload
    csp = tab.responses["/console/"]["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_a_one_time_link_signs_in_once_and_leaves_no_code_behind(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    try:
        run = yield deferToThread(subprocess.run, [OPENCLAW, "console", "--home", daemon.home, "--gateway",
                                                   f"ws://127.0.0.1:{daemon.gateway_port}/"],
                                  capture_output=True, text=True, timeout=60)
        link = run.stdout.strip()
        first = yield tabs(daemon)
        yield first.run(lambda t: t.page.goto(link))
        yield first.run(signed_in)
        address = yield first.run(lambda t: t.page.url)
        second = yield tabs(daemon)
        yield second.run(lambda t: t.page.goto(link))
        used = yield second.run(wait_text, "#login-error", "used or expired")
    finally:
        yield daemon.stop()
    assert "#code=" in link and "code" not in address and address.endswith("#overview")
    assert "run openclaw console again" in used
    first.clean()


@pytest_twisted.inlineCallbacks
def test_a_dropped_connector_turns_disconnected_on_the_overview_without_a_reload(tmp_path, tabs) -> None:
    api = BotAPI().start()
    daemon = telegram_daemon(str(tmp_path), api)
    try:
        connector = daemon.service.getServiceNamed("connectors").getServiceNamed("telegram")
        yield until(connector.is_connected, what="telegram connected")
        tab = yield open_console(tabs, daemon)
        up = yield tab.run(wait_text, "[data-connector=telegram]", "connected")
        yield api.stop()  # the platform drops every connection and stops answering
        down = yield tab.run(wait_text, "[data-connector=telegram]", "disconnected")
        same = yield tab.run(not_reloaded)
    finally:
        yield daemon.stop()
        yield api.stop()
    assert up == "connected" and down.startswith("disconnected") and same
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_a_dropped_gateway_connection_is_shown_and_made_again(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    try:
        tab = yield open_console(tabs, daemon)
        yield until(lambda: daemon.gateway.connections, what="the page's connection")
        for conn in list(daemon.gateway.connections):
            conn.transport.abortConnection()
        lost = yield tab.run(wait_text, "#link-state", "reconnecting")
        back = yield tab.run(wait_text, "#link-state", "live")
        reply = yield tab.run(ask_status)
        same = yield tab.run(not_reloaded)
    finally:
        yield daemon.stop()
    assert lost.startswith("disconnected") and back == "live" and "status: ok" in reply and same
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_a_chat_message_gets_the_rules_brain_s_reply_on_the_page(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    try:
        tab = yield open_console(tabs, daemon)
        reply = yield tab.run(ask_status)
        history = yield daemon.service.getServiceNamed("store").history("webchat:console", 10)
    finally:
        yield daemon.stop()
    assert "status: ok" in reply
    assert [m["role"] for m in history] == ["user", "assistant"] and history[0]["text"] == "/status"
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_a_tcp_check_going_down_shows_the_alert_on_the_overview_and_in_the_chat(tmp_path, tabs) -> None:
    port = tcp_listener()
    target = f"127.0.0.1:{port.getHost().port}"
    daemon = RunningDaemon(str(tmp_path), daemon_config(
        checks=[{"name": "database", "type": "tcp", "target": target, "every": "0.2s", "fail_after": 2, "timeout": "1s"}],
        heartbeat={"every": 0}))
    try:
        tab = yield open_console(tabs, daemon)
        yield tab.run(go, "checks")
        yield tab.run(wait_text, "#checks-body", "up")
        yield port.stopListening()  # the service goes away
        yield tab.run(go, "overview")
        open_alert = yield tab.run(wait_text, "#ov-alerts li", "database")
        yield tab.run(go, "chat")
        in_chat = yield tab.run(wait_text, "#chat-log li.alert", "database is DOWN")
        yield tab.run(go, "checks")
        state = yield tab.run(wait_text, "#checks-body", "ALERTING")
    finally:
        yield daemon.stop()
    assert "is down since" in open_alert and "refused" in open_alert.lower()
    assert "database is DOWN" in in_chat and "ALERTING" in state
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_a_pairing_approved_in_the_console_lets_the_sender_s_next_message_through(tmp_path, tabs) -> None:
    api = BotAPI().start()
    daemon = telegram_daemon(str(tmp_path), api, pairing=True, allow_from=[99])
    try:
        api.push(text_update(4242, "hello?", first_name="Ann"))
        yield until(lambda: any("approve" in t for t in api.texts(4242)), what="the pairing code")
        code = api.texts(4242)[0].split("approve ")[1].split()[0]
        tab = yield open_console(tabs, daemon)
        yield tab.run(go, "access")
        yield tab.run(lambda t: t.page.click(f"text=Approve {code}"))
        done = yield tab.run(wait_text, "#access-result", "approved")
        approved = yield tab.run(wait_text, "#access-approved", "telegram:4242")
        configured = yield tab.run(lambda t: t.page.inner_text("#access-config"))
        api.push(text_update(4242, "/status"))
        yield until(lambda: any(t.startswith("status:") for t in api.texts(4242)), what="a reply to the paired sender")
        yield tab.run(lambda t: t.page.click("text=Revoke telegram:4242"))
        yield tab.run(lambda t: t.page.click("text=Really revoke telegram:4242"))
        revoked = yield tab.run(wait_text, "#access-result", "revoked")
        left = yield tab.run(wait_text, "#access-approved", "Nobody is approved")
    finally:
        yield daemon.stop()
        yield api.stop()
    assert done == "approved telegram:4242" and "Ann" in approved
    assert revoked == "revoked telegram:4242" and left and "telegram" in configured and "99" in configured
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_an_alert_made_while_nobody_looked_is_marked_while_you_were_away(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path), daemon_config(heartbeat={"every": 0, "target": "webchat:console"}))
    try:
        yield daemon.service.getServiceNamed("notifier").notify("alert", "backups", "backups is DOWN: no run since Monday",
                                                                dedupe_key="backups:1")
        tab = yield open_console(tabs, daemon)
        yield tab.run(go, "chat")
        away = yield tab.run(wait_text, "#chat-log li.alert", "while you were away")
        count = yield tab.run(lambda t: t.page.locator("#chat-log li", has_text="no run since Monday").count())
    finally:
        yield daemon.stop()
    assert "backups is DOWN" in away and count == 1  # pushed and in the history: shown once
    tab.clean()


def keyboard_only(tab: Tab, token: str) -> dict:
    """Sign in, change page and send a message with the keyboard alone."""
    page = tab.page
    page.goto(tab.daemon.url("/console/"))
    page.wait_for_selector("#token:focus")
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    page.wait_for_selector("#ov-status")
    for _ in range(12):  # Tab through the header to the Chat link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.nav") == "chat":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat-text:focus")
    page.keyboard.type("/status")
    page.keyboard.press("Enter")
    page.locator("#chat-log li.assistant").filter(has_text="status:").wait_for()
    return page.evaluate("""() => ({
        skip: document.querySelector('.skip').getAttribute('href'),
        background: getComputedStyle(document.body).backgroundColor,
    })""")


@pytest_twisted.inlineCallbacks
def test_the_console_works_from_the_keyboard_and_follows_the_dark_setting(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    try:
        dark = yield tabs(daemon, scheme="dark")
        seen = yield dark.run(keyboard_only, daemon.token)
        light = yield tabs(daemon)
        yield light.run(lambda t: t.page.goto(t.daemon.url("/console/")))
        background = yield light.run(lambda t: t.page.evaluate("getComputedStyle(document.body).backgroundColor"))
    finally:
        yield daemon.stop()
    assert seen["skip"] == "#main"
    assert seen["background"] == "rgb(18, 22, 28)" and background == "rgb(255, 255, 255)"
    dark.clean()
    light.clean()


@pytest_twisted.inlineCallbacks
def test_run_a_check_and_the_heartbeat_now_and_filter_the_logs(tmp_path, tabs) -> None:
    port = tcp_listener()
    daemon = RunningDaemon(str(tmp_path), daemon_config(
        checks=[{"name": "cache", "type": "tcp", "target": f"127.0.0.1:{port.getHost().port}", "every": "1h"}],
        heartbeat={"every": "1h"}))
    checks = daemon.service.getServiceNamed("checks")
    try:
        tab = yield open_console(tabs, daemon)
        yield until(lambda: checks.state_of("cache")["ok"], what="the first probe")
        probe, probed = checks.probes["cache"], []
        checks.probes["cache"] = lambda: (probed.append(1), probe())[1]
        yield tab.run(go, "checks")
        yield tab.run(lambda t: t.page.click("text=Run cache now"))
        yield until(lambda: probed, what="the probe run from the page")
        ran = yield tab.run(wait_text, "#checks-result", "cache ran")
        yield tab.run(go, "schedule")
        yield tab.run(lambda t: t.page.click("#beat-now"))
        verdict = yield tab.run(wait_text, "#beat-result", "verdict:")
        beats = yield tab.run(wait_text, "#sched-beats tr", verdict.split("verdict: ")[1].split()[0])
        intruder = yield wsclient.connect(daemon.gateway_port)
        intruder.send("connect", {"token": "guessed"})
        yield intruder.closed
        yield tab.run(go, "logs")
        warned = yield tab.run(wait_text, "#logs-body tr", "openclaw:gateway:unauthorized")
        yield tab.run(lambda t: t.page.select_option("#logs-level", "error"))
        errors_only = yield tab.run(lambda t: (t.page.wait_for_selector("#logs-body .empty"), t.page.inner_text("#logs-body"))[1])
    finally:
        yield daemon.stop()
        yield port.stopListening()
    assert ran.startswith("cache ran: passed") and verdict.startswith("verdict: ") and beats
    assert "warn" in warned and "No warnings or errors" in errors_only
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_the_instances_page_shows_each_instance_and_its_leases(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    real = daemon.gateway.methods["cluster.status"]
    try:
        tab = yield open_console(tabs, daemon)
        yield tab.run(go, "instances")
        alone = yield tab.run(wait_text, "#instances-body tr", "this one")  # SQLite: the one instance, every lease
        daemon.gateway.methods["cluster.status"] = lambda conn, params: {"instance_id": "a1", "holds": ["scheduler"], "instances": [
            {"id": "a1", "host": "one", "pid": 7, "started_at": "2026-12-01T08:00:00Z", "version": "0.1.0", "holds": ["scheduler"]},
            {"id": "b2", "host": "two", "pid": 9, "started_at": "2026-12-01T08:01:00Z", "version": "0.1.0", "holds": ["connector:telegram"]}]}
        yield tab.run(go, "overview")
        yield tab.run(go, "instances")
        other = yield tab.run(wait_text, "#instances-body tr", "b2")
        mine = yield tab.run(wait_text, "#instances-body tr", "a1")
        del daemon.gateway.methods["cluster.status"]  # a daemon without the method
        yield tab.run(go, "overview")
        yield tab.run(go, "instances")
        single = yield tab.run(wait_text, "#instances-body", "Single instance")
    finally:
        yield daemon.stop()
    answer = yield real(None, {})
    assert answer["instance_id"] in alone and all(lease in alone for lease in answer["holds"])
    assert "connector:telegram" in other and "two (pid 9)" in other and "scheduler" in mine and "this one" in mine
    assert "store: SQLiteStore" in single
    tab.clean()


@pytest_twisted.inlineCallbacks
def test_the_reports_page_shows_a_written_report_and_today_so_far(tmp_path, tabs) -> None:
    daemon = RunningDaemon(str(tmp_path))
    folder = os.path.join(daemon.home, "reports")
    os.makedirs(folder)
    for suffix, text in ((".md", "# Report for 2026-11-30\n"), (".html", "<h1>Report for 2026-11-30</h1><svg></svg>")):
        with open(os.path.join(folder, "2026-11-30" + suffix), "w", encoding="utf-8") as f:
            f.write(text)
    try:
        tab = yield open_console(tabs, daemon)
        yield tab.run(go, "reports")
        today = yield tab.run(wait_text, "#report-view h2", "Report for")
        yield tab.run(lambda t: t.page.click("#reports-list >> text=2026-11-30"))
        written = yield tab.run(lambda t: t.page.frame_locator("#report-view iframe").locator("h1").inner_text())
    finally:
        yield daemon.stop()
    assert today.startswith("Report for 20") and written == "Report for 2026-11-30"
    tab.clean()


@defer.inlineCallbacks
def seed_a_day(store: Any, now: float) -> Any:
    """A day of results for the screenshots: latency that wanders, and a half-hour outage."""
    for i in range(96):
        t = now - 86400 + i * 900
        down = 60 <= i < 62
        yield store.append_journal("check", t, {"check": "website", "ok": not down,
                                                "latency": 0.0 if down else 0.02 + 0.015 * ((i * 7) % 11) / 10,
                                                "detail": "connection refused" if down else "connected"})
    for kind, message, i in (("alert", "website is DOWN: connection refused", 60), ("recovery", "website is back up after 30m", 62)):
        yield store.append_journal("alert", now - 86400 + i * 900, {"kind": kind, "check": "website", "message": message})


def _shoot(tab: Tab, folder: str, width: str) -> list[str]:
    taken = []
    for name in PAGES:
        go(tab, name)
        tab.page.wait_for_load_state("networkidle")
        tab.page.wait_for_timeout(300)  # the page's own requests answered; let it paint
        wide = tab.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{name} is {wide}px wider than a {width} screen"
        path = os.path.join(folder, f"{name}-{width}.png")
        tab.page.screenshot(path=path, full_page=name != "chat")
        taken.append(path)
    return taken


@pytest_twisted.inlineCallbacks
def test_screenshots_of_every_page_at_desktop_and_phone_widths(tmp_path, tabs) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS") or tempfile.mkdtemp(prefix="openclaw-console-")
    os.makedirs(folder, exist_ok=True)
    port, api = tcp_listener(), BotAPI().start()
    daemon = RunningDaemon(str(tmp_path), daemon_config(
        checks=[{"name": "website", "type": "tcp", "target": f"127.0.0.1:{port.getHost().port}", "every": "0.5s"}],
        heartbeat={"every": "1h"}, connectors={"telegram": {"enabled": True, "api_url": api.url, "poll_timeout": 1}}),
        environ={"TELEGRAM_BOT_TOKEN": TOKEN})
    taken = []
    try:
        yield until(lambda: daemon.service.getServiceNamed("checks").state_of("website")["ok"], what="probed")
        yield seed_a_day(daemon.service.getServiceNamed("store"), reactor.seconds())
        for viewport, width in ((DESKTOP, "desktop"), (PHONE, "phone")):
            tab = yield open_console(tabs, daemon, viewport)
            if width == "desktop":
                yield tab.run(ask_status)
            shots = yield tab.run(_shoot, folder, width)
            taken += shots
            tab.clean()
    finally:
        yield daemon.stop()
        yield port.stopListening()
        yield api.stop()
    print(f"\nconsole screenshots: {folder}")
    assert len(taken) == 2 * len(PAGES) and all(os.path.getsize(p) > 5000 for p in taken)
    if os.environ.get("OPENCLAW_DOC_SCREENSHOTS") == "1":
        for name in ("overview-desktop", "overview-phone", "chat-desktop", "chat-phone"):
            shutil.copy(os.path.join(folder, f"{name}.png"), os.path.join(ROOT, "docs", "console", f"{name}.png"))
