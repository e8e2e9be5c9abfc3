"""
The web console's server side over real sockets: the files and their
headers, one-time links, the gateway's console origin, the live feed, the
methods the pages use, and that nothing changes state without the token.
The pages themselves are driven in a real browser in test_console_browser.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile

import orjson
import pytest
import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

from openclaw.connectors.access import Access
from openclaw.console.feed import ConsoleFeed
from openclaw.console.links import LinkCodes
from openclaw.console.site import FILES, ConsoleApp, load_files, own_origins
from openclaw.gateway.console_methods import component
from openclaw.gateway.frames import FrameError
from openclaw.proactive.check_history import history
from openclaw.web import HealthApp
from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config, file_source
from tests.waiting import until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")
#: The issue's budget for the whole console, transferred.
MAX_CONSOLE_BYTES = 200 * 1024


# One-time codes and the pure parts

def test_a_code_works_once_and_only_within_its_minute() -> None:
    clock = Clock()
    codes = LinkCodes(clock)
    code, expires = codes.issue()
    assert expires == 60.0 and len(code) >= 32
    assert codes.redeem(code) and not codes.redeem(code)
    late, _ = codes.issue()
    clock.advance(60.0)
    assert not codes.redeem(late)
    assert not codes.redeem(None) and not codes.redeem({"code": late})


def test_asking_for_many_codes_drops_the_oldest() -> None:
    codes = LinkCodes(Clock(), limit=3)
    issued = [codes.issue()[0] for _ in range(5)]
    assert [codes.redeem(c) for c in issued] == [False, False, True, True, True]


CHECK_ROWS = st.lists(st.tuples(st.floats(0, 86400), st.booleans(), st.floats(0, 30), st.sampled_from("ab")),
                      max_size=200).map(lambda rows: sorted(rows))


@given(CHECK_ROWS)
def test_a_day_of_results_fits_in_fixed_slots_and_incidents_count_every_failure(rows) -> None:
    journal = [{"timestamp": t, "payload": {"check": name, "ok": ok, "latency": latency}}
               for t, ok, latency, name in rows]
    found = history(journal, 0.0, 86400.0, buckets=24)
    for name, entry in found.items():
        mine = [r for r in rows if r[3] == name]
        assert len(entry["points"]) == 24
        assert sum(i["failures"] for i in entry["incidents"]) == sum(1 for r in mine if not r[1])
        slowest = max(p[1] for p in entry["points"] if p[1] is not None)
        assert slowest == max(r[2] for r in mine)
        assert all(i["end"] is None or i["end"] >= i["start"] for i in entry["incidents"])
        assert bool(entry["incidents"] and entry["incidents"][-1]["end"] is None) == (not mine[-1][1])
    assert set(found) == {r[3] for r in rows}


def test_log_components_are_the_type_s_second_part() -> None:
    assert component({"message_type": "openclaw:gateway:unauthorized"}) == "gateway"
    assert component({"action_type": "openclaw:check:run"}) == "check"
    assert component({"message_type": "twisted:log"}) == "twisted"


def test_a_loopback_listener_s_origins_are_its_loopback_names() -> None:
    assert own_origins("127.0.0.1", 8080) == {"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"}
    assert own_origins("192.0.2.7", 80) == {"http://192.0.2.7:80"}


def test_the_feed_pushes_changes_and_keepalives_only_while_someone_listens() -> None:
    clock = Clock()
    snapshot = {"status": "ok", "uptime": 1.0}
    feed = ConsoleFeed(clock, lambda: dict(snapshot), every=1.0, keepalive=5.0, limit=2)
    feed.startService()

    class Conn:
        def __init__(self) -> None:
            self.sent: list[dict] = []

        def send(self, data: bytes) -> None:
            self.sent.append(orjson.loads(data))

    conn = Conn()
    assert feed.subscribe(conn) == snapshot
    clock.advance(1.0)  # first tick: sent
    snapshot["uptime"] = 3.0
    clock.advance(1.0)  # only a volatile field changed: not sent
    assert len(conn.sent) == 1 and conn.sent[0]["event"] == "console.status"
    snapshot["status"] = "degraded"
    clock.advance(1.0)
    assert conn.sent[-1]["payload"]["status"] == "degraded"
    for _ in range(5):
        clock.advance(1.0)
    assert len(conn.sent) == 3  # the keepalive
    other = Conn()
    feed.subscribe(other)
    with pytest.raises(FrameError, match="consoles are open"):
        feed.subscribe(Conn())
    feed.forget(conn)
    assert clock.getDelayedCalls()  # one still listens
    feed.forget(other)
    assert not clock.getDelayedCalls()
    feed.stopService()


# The files, over HTTP

@pytest.fixture
def daemon(tmp_path):
    return RunningDaemon(str(tmp_path / "home"))


@pytest_twisted.inlineCallbacks
def test_every_file_is_served_with_a_strict_policy_and_the_whole_console_is_small(daemon) -> None:
    total = 0
    try:
        for name in FILES:
            code, headers, body = yield daemon.get(f"/console/{'' if name == 'index.html' else name}")
            assert code == 200, name
            csp = headers.getRawHeaders(b"content-security-policy")[0].decode()
            for part in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "object-src 'none'",
                         "frame-ancestors 'none'", "base-uri 'none'",
                         f"connect-src 'self' ws://127.0.0.1:{daemon.gateway_port}"):
                assert part in csp, (name, part)
            assert "unsafe" not in csp
            assert headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]
            assert headers.getRawHeaders(b"referrer-policy") == [b"no-referrer"]
            assert headers.getRawHeaders(b"content-type")[0].decode() == FILES[name]
            total += len(body)
        _, headers, _ = yield daemon.get("/console/")
        assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
        code, _, body = yield daemon.get("/console/config.json")
        assert code == 200 and orjson.loads(body) == {"gateway": f"ws://127.0.0.1:{daemon.gateway_port}/"}
        missing, _, _ = yield daemon.get("/console/secrets.txt")
        assert missing == 404
    finally:
        yield daemon.stop()
    assert total < MAX_CONSOLE_BYTES, f"the console is {total} bytes"


@pytest_twisted.inlineCallbacks
def test_the_gateway_address_follows_the_page_s_host_name_and_only_a_plain_one(daemon) -> None:
    def config(host: bytes) -> object:
        d = treq.get(daemon.url("/console/config.json"), headers={"Host": [host]}, persistent=False)
        return d.addCallback(lambda response: response.json().addCallback(
            lambda body: (body["gateway"], response.headers.getRawHeaders(b"content-security-policy")[0].decode())))

    try:
        named = yield config(f"localhost:{daemon.web_port}".encode())
        hostile = yield config(b"evil.example'; script-src *")
    finally:
        yield daemon.stop()
    port = daemon.gateway_port
    assert named[0] == f"ws://localhost:{port}/" and f"connect-src 'self' ws://localhost:{port};" in named[1]
    assert hostile[0] == f"ws://127.0.0.1:{port}/" and "script-src *" not in hostile[1]


def test_the_html_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() -> None:
    files = load_files()
    page = files["index.html"][0].decode()
    assert "<script src=\"app.js\"" in page and "<script>" not in page and "style=" not in page
    assert "<style" not in page and not re.search(r"<[^>]*\son[a-z]+=", page)  # no handlers in markup
    for body, _, _ in files.values():
        text = body.decode()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text and ".innerHTML" not in text and "eval(" not in text


@pytest_twisted.inlineCallbacks
def test_the_console_can_be_switched_off_and_on_by_a_reload(tmp_path) -> None:
    home = str(tmp_path / "home")
    daemon = RunningDaemon(home, source=file_source(home, "web:\n  console: false\n"))
    origin = f"http://127.0.0.1:{daemon.web_port}"
    try:
        off, _, _ = yield daemon.get("/console/")
        with pytest.raises(ConnectionError):
            yield wsclient.connect(daemon.gateway_port, origin=origin)
        with open(os.path.join(home, "openclaw.yaml"), "w", encoding="utf-8") as f:
            f.write("web:\n  console: true\n  console_gateway_url: wss://claw.example.org/gateway\n")
        outcome = yield daemon.service.reload()
        on, headers, body = yield daemon.get("/console/config.json")
        client = yield wsclient.connect(daemon.gateway_port, daemon.token, origin=origin)
        yield client.close()
    finally:
        yield daemon.stop()
    assert off == 404 and outcome.result == "applied" and not outcome.restart_needed
    assert on == 200 and orjson.loads(body) == {"gateway": "wss://claw.example.org/gateway"}
    assert "connect-src 'self' wss://claw.example.org;" in headers.getRawHeaders(b"content-security-policy")[0].decode()


@pytest_twisted.inlineCallbacks
def test_the_gateway_admits_the_console_s_own_origin_and_no_other(daemon) -> None:
    try:
        for origin in (f"http://127.0.0.1:{daemon.web_port}", f"http://localhost:{daemon.web_port}"):
            client = yield wsclient.connect(daemon.gateway_port, daemon.token, origin=origin)
            yield client.close()
        for origin in ("http://evil.example", f"http://127.0.0.1:{daemon.web_port + 1}", "null"):
            with pytest.raises(ConnectionError):
                yield wsclient.connect(daemon.gateway_port, origin=origin)
    finally:
        yield daemon.stop()


# One-time links

def console_cli(daemon: RunningDaemon, *args: str):
    return deferToThread(subprocess.run, [
        OPENCLAW, "console", "--home", daemon.home, "--gateway", f"ws://127.0.0.1:{daemon.gateway_port}/", *args,
    ], capture_output=True, text=True, timeout=60)


def post_code(daemon: RunningDaemon, body: bytes) -> object:
    d = treq.post(daemon.url("/console/session"), data=body, headers={"Content-Type": ["application/json"]},
                  persistent=False)
    return d.addCallback(lambda response: response.json().addCallback(lambda body: (response.code, body)))


@pytest_twisted.inlineCallbacks
def test_openclaw_console_prints_a_link_whose_code_buys_the_token_once(daemon) -> None:
    try:
        run = yield console_cli(daemon)
        assert run.returncode == 0, run.stderr
        url = run.stdout.strip()
        assert url.startswith(f"http://127.0.0.1:{daemon.web_port}/console/#code=") and daemon.token not in url
        assert "within 60s" in run.stderr
        code = url.split("#code=")[1]
        first = yield post_code(daemon, orjson.dumps({"code": code}))
        second = yield post_code(daemon, orjson.dumps({"code": code}))
        wrong = yield post_code(daemon, b'{"code": "guess"}')
        broken = yield post_code(daemon, b"[1, 2")
        big = yield treq.post(daemon.url("/console/session"), data=b"x" * 2048, persistent=False)
        yield big.content()
        refusals = [m for _, m in daemon.service.getServiceNamed("logging").recent()
                    if m.get("message_type") == "openclaw:console:code"]
    finally:
        yield daemon.stop()
    assert [m["accepted"] for m in refusals] == [False, False, False] and code not in str(refusals)
    assert first == (200, {"token": daemon.token})
    assert second[0] == wrong[0] == broken[0] == 403 and "token" not in second[1]
    assert big.code == 413


@pytest_twisted.inlineCallbacks
def test_the_link_from_a_stopped_daemon_says_why(tmp_path) -> None:
    run = yield deferToThread(subprocess.run, [OPENCLAW, "console", "--home", str(tmp_path), "--gateway",
                                               "ws://127.0.0.1:1/"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stderr.startswith("openclaw: ") and "Traceback" not in run.stderr


# Nothing changes state without the token

@pytest_twisted.inlineCallbacks
def test_every_gateway_method_is_refused_before_connect(daemon) -> None:
    names = sorted(daemon.gateway.methods)
    assert {"console.link", "console.subscribe", "pairing.approve", "pairing.deny", "checks.run",
            "heartbeat.run", "reload", "chat.send"} <= set(names)
    origin = f"http://127.0.0.1:{daemon.web_port}"

    @defer.inlineCallbacks
    def refused(name: str) -> object:
        client = yield wsclient.connect(daemon.gateway_port, origin=origin)
        reply = yield client.request(name, {"code": "123456", "name": "x", "text": "hi"})
        code = yield client.closed
        return name, reply["ok"], reply["error"]["code"], code

    try:  # at once: each waits out the closing handshake the gateway no longer reads
        answers = yield defer.gatherResults([refused(name) for name in names])
    finally:
        yield daemon.stop()
    assert answers == [(name, False, "unauthorized", 1008) for name in names]


def test_the_only_web_routes_that_take_a_body_are_the_platforms_and_the_code_exchange() -> None:
    changing = set()
    for app in (HealthApp.app, ConsoleApp.app):
        for rule in app.url_map.iter_rules():
            if set(rule.methods or ()) - {"GET", "HEAD", "OPTIONS"}:
                changing.add(rule.rule)
    assert changing == {"/webhooks/<name>", "/session"}


# The methods the pages use

@defer.inlineCallbacks
def ask(client: wsclient.Client, method: str, params: dict | None = None) -> object:
    """A request's answer, passing over the feed's events."""
    request_id = client.send(method, params)
    while True:
        frame = yield client.next()
        if frame.get("id") == request_id:
            return frame

@pytest_twisted.inlineCallbacks
def test_the_console_feed_logs_and_history_methods(tmp_path) -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    address = f"127.0.0.1:{port.getHost().port}"
    daemon = RunningDaemon(str(tmp_path), daemon_config(checks=[{"name": "db", "type": "tcp", "target": address, "every": "1h"}],
                                                        heartbeat={"every": 0}))
    try:
        client = yield wsclient.connect(daemon.gateway_port, daemon.token)
        first = yield ask(client, "console.subscribe")
        assert first["ok"] and first["payload"]["status"] == "ok" and first["payload"]["version"]
        event = yield client.next()
        while event["type"] != "event":
            event = yield client.next()
        assert event["event"] == "console.status" and "cpu_seconds" in event["payload"]
        yield until(lambda: daemon.service.getServiceNamed("checks").state_of("db")["ok"] is True, what="db probed")
        checks = yield ask(client, "checks.history")
        points = checks["payload"]["checks"]["db"]["points"]
        assert len(points) == 96 and any(p[2] is True for p in points)
        beat = yield ask(client, "heartbeat.run")
        assert beat["ok"], beat
        beats = yield ask(client, "heartbeat.history")
        assert [b["verdict"] for b in beats["payload"]["beats"]] == [beat["payload"]["verdict"]]
        reports = yield ask(client, "reports.list")
        assert reports["payload"] == {"days": []}
        bad = yield wsclient.connect(daemon.gateway_port)
        bad.send("connect", {"token": "wrong"})
        yield bad.closed
        logs = yield ask(client, "logs.recent", {"component": "gateway"})
        types = [r["type"] for r in logs["payload"]["records"]]
        assert "openclaw:gateway:unauthorized" in types and "gateway" in logs["payload"]["components"]
        errors = yield ask(client, "logs.recent", {"level": "error"})
        assert all(r["level"] == "error" for r in errors["payload"]["records"])
        refused = yield ask(client, "logs.recent", {"level": "info"})
        assert refused["error"]["code"] == "invalid_field"
        store = daemon.service.getServiceNamed("store")
        decision = yield Access("telegram", (), True, 10, store, reactor).decide("77", "77", "Bo")
        code = decision.reply.split("approve ")[1].split()[0]
        denied = yield ask(client, "pairing.deny", {"code": code})
        again = yield ask(client, "pairing.deny", {"code": code})
        listed = yield ask(client, "pairing.list")
        assert denied["payload"] == {"denied": True} and again["payload"] == {"denied": False}
        assert listed["payload"]["pending"] == [] and listed["payload"]["approved"] == []
        yield client.close()
    finally:
        yield daemon.stop()
        yield port.stopListening()


# Packaging

def test_an_installed_package_carries_the_console(tmp_path) -> None:
    """A built wheel (what ``pip install .`` installs) holds every file, and a site run from it serves them."""
    # Built from a copy: setuptools reuses a build/ directory, which would hide a package left out.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    for name in ("openclaw", "twisted"):
        shutil.copytree(os.path.join(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    with zipfile.ZipFile(tmp_path / wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    assert {f"openclaw/console/static/{name}" for name in FILES} <= names
    # Every package of the source tree, so a new one cannot be left out of an install.
    packages = {os.path.relpath(os.path.join(d, "__init__.py"), ROOT)
                for d, _, files in os.walk(os.path.join(ROOT, "openclaw")) if "__init__.py" in files}
    assert packages and packages <= names, sorted(packages - names)
    served = subprocess.run([sys.executable, "-I", "-c", SERVE_FROM, str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=60)
    assert served.returncode == 0, served.stderr
    where, *sizes = served.stdout.split()
    assert where.startswith(str(tmp_path / "site"))
    assert [int(n) for n in sizes] == [len(load_files()[name][0]) for name in FILES]


#: Serve the console from an unpacked wheel on a real port and fetch every file from it.
SERVE_FROM = """
import sys, urllib.request
sys.path.insert(0, sys.argv[1])
from twisted.internet import reactor
from twisted.web.server import Site
import openclaw.console.site as site
from openclaw.console.links import LinkCodes
from openclaw.runtime import Runtime
from openclaw.web import HealthApp
app = HealthApp(Runtime(reactor, "x"), console=site.ConsoleApp(LinkCodes(reactor), lambda: "t", lambda: 1))
port = reactor.listenTCP(0, Site(app.app.resource()), interface="127.0.0.1").getHost().port
def fetch():
    try:
        names = ["" if n == "index.html" else n for n in site.FILES]
        print(site.__file__, *[len(urllib.request.urlopen(f"http://127.0.0.1:{port}/console/{n}").read()) for n in names])
    finally:
        reactor.callFromThread(reactor.stop)
reactor.callInThread(fetch)
reactor.run()
"""


def test_the_docs_show_the_overview_and_the_chat_at_both_widths() -> None:
    with open(os.path.join(ROOT, "docs", "console.md"), encoding="utf-8") as f:
        doc = f.read()
    for name in ("overview-desktop", "overview-phone", "chat-desktop", "chat-phone"):
        assert f"(console/{name}.png)" in doc
        with open(os.path.join(ROOT, "docs", "console", f"{name}.png"), "rb") as image:
            assert image.read(8) == b"\x89PNG\r\n\x1a\n"
