"""
The daemon's life as an operator sees it, with real ``twistd`` processes:
the config found from the home, the CLI finding the daemon, one daemon per
home, SIGHUP reloads, and SIGTERM drains that lose nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from openclaw.system.homelock import EX_LOCKED
from tests import wsclient
from tests.llm_servers import FakeLLM, openai_text
from tests.process import OPENCLAW, HomeDaemon, clean_env
from tests.telegram_server import TOKEN as BOT_TOKEN
from tests.telegram_server import BotAPI
from tests.waiting import until

GATEWAY_TOKEN = "lifecycle-test-token-0123456789"


def write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def log_lines(home: str) -> list[dict]:
    with open(os.path.join(home, "logs", "combined.log"), "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def cli(*args: str, home: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """An ``openclaw`` command with only ``OPENCLAW_HOME`` to go on (no flags, no config)."""
    return subprocess.run([OPENCLAW, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(OPENCLAW_HOME=home), cwd="/")


@pytest.fixture
def daemons(tmp_path):
    """Every daemon a test starts is killed in teardown, even when the test fails."""
    started: list[HomeDaemon] = []

    def make(home: str, **env: str) -> HomeDaemon:
        started.append(HomeDaemon(tmp_path, home, **env))
        return started[-1]

    yield make
    for daemon in started:
        daemon.ensure_dead()


CONFIG = f"""
gateway: {{listen: "tcp:0:interface=127.0.0.1", token: "{GATEWAY_TOKEN}"}}
web: {{listen: "tcp:0:interface=127.0.0.1"}}
checks:
  - {{name: home-disk, type: disk, target: /, every: 1h}}
"""


def test_the_home_config_is_read_and_every_command_finds_the_daemon(tmp_path, daemons) -> None:
    home = str(tmp_path / "home")
    os.makedirs(home, mode=0o700)
    write(os.path.join(home, "openclaw.yaml"), CONFIG)
    daemon = daemons(home)
    daemon.start()
    running = daemon.running()
    assert running["pid"] == daemon.process.pid and running["config"] == os.path.join(home, "openclaw.yaml")
    assert os.stat(os.path.join(home, "daemon.json")).st_mode & 0o777 == 0o600
    # Ports 0 in the file: only daemon.json can tell where it listens.
    status = cli("status", home=home)
    assert status.returncode == 0, status.stderr
    assert "openclaw ok" in status.stdout
    assert f"config: {os.path.join(home, 'openclaw.yaml')} (digest " in status.stdout
    checks = cli("checks", home=home)
    assert checks.returncode == 0 and "home-disk" in checks.stdout, checks.stderr
    sent = cli("send", "/help", home=home)
    assert sent.returncode == 0 and sent.stdout.strip(), sent.stderr
    first = log_lines(home)[0]
    assert first["message_type"] == "openclaw:daemon:starting"
    assert first["config"] == os.path.join(home, "openclaw.yaml")

    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(60) == 0
    assert not os.path.exists(os.path.join(home, "daemon.json"))


def test_a_second_daemon_on_the_same_home_exits_73_naming_the_first(tmp_path, daemons) -> None:
    home = str(tmp_path / "home")
    os.makedirs(home, mode=0o700)
    write(os.path.join(home, "openclaw.yaml"), CONFIG)
    first = daemons(home)
    first.start()
    second = daemons(home)
    second.start(wait=None)
    assert second.process.wait(30) == EX_LOCKED
    output = second.output()
    assert f"pid {first.process.pid}" in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1
    # The first keeps serving, and its runtime file is still its own.
    assert first.health()["status"] == "ok"
    assert first.running()["pid"] == first.process.pid


RELOAD_BASE = f"""
gateway: {{listen: "tcp:0:interface=127.0.0.1", token: "{GATEWAY_TOKEN}"}}
web: {{listen: "tcp:0:interface=127.0.0.1"}}
heartbeat: {{every: 30m}}
connectors:
  telegram: {{enabled: true, token: "{BOT_TOKEN}", api_url: "URL", allow_from: ["42"], poll_timeout: 0.5}}
"""


@pytest_twisted.inlineCallbacks
def test_sighup_applies_a_new_check_level_and_interval_without_dropping_anyone(tmp_path, daemons) -> None:
    api = BotAPI().start()
    home = str(tmp_path / "home")
    os.makedirs(home, mode=0o700)
    base = RELOAD_BASE.replace("URL", api.url)
    write(os.path.join(home, "openclaw.yaml"), base)
    daemon = daemons(home)
    try:
        daemon.start()
        client = yield wsclient.connect(daemon.gateway_port, GATEWAY_TOKEN)
        reply = yield client.request("subscribe", {"session": "*"})
        assert reply["ok"]
        yield until(lambda: api.calls["getMe"] >= 1 and api.calls["getUpdates"] >= 1)
        connects = api.calls["getMe"]

        write(os.path.join(home, "openclaw.yaml"), base.replace("every: 30m", "every: 5m") +
              "log: {level: debug}\nchecks:\n  - {name: added-disk, type: disk, target: /, every: 1h}\n")
        daemon.signal(signal.SIGHUP)
        lines = daemon.notify.until("READY=1")
        assert "RELOADING=1" in lines and any(line.startswith("MONOTONIC_USEC=") for line in lines)
        yield until(lambda: "added-disk" in daemon.health()["checks"])
        health = daemon.health()
        assert health["config"]["last_reload"]["result"] == "applied"
        assert set(health["config"]["last_reload"]["changed"]) == {"heartbeat", "log", "checks"}
        # The same WebSocket, still authenticated; the unchanged connector kept its session.
        pong = yield client.request("ping")
        assert pong["ok"]
        assert api.calls["getMe"] == connects and health["connectors"]["telegram"]["reconnects"] == 0
        status = yield client.request("heartbeat.status")
        assert status["payload"]["every"] == 300
        shown = cli("status", home=home)
        assert "last reload: applied at " in shown.stdout, shown.stdout

        write(os.path.join(home, "openclaw.yaml"), base + "checks: [{name: broken, type: nope}]\n")
        daemon.signal(signal.SIGHUP)
        yield until(lambda: daemon.health()["config"]["last_reload"]["result"] == "rejected")
        health = daemon.health()
        assert "checks" in health["config"]["last_reload"]["reason"]
        assert "added-disk" in health["checks"]  # everything as it was
        rejected = [line for line in log_lines(home) if line.get("result") == "rejected"]
        assert rejected and rejected[-1]["log_level"] == "error"
        pong = yield client.request("ping")
        assert pong["ok"]
        yield client.close()
        daemon.signal(signal.SIGTERM)
        yield until(daemon.exited, timeout=60)
        assert daemon.process.returncode == 0
    finally:
        daemon.ensure_dead()
        yield api.stop()


SIGNAL_IN_WRITE = r"""
import os, signal, sys
from openclaw.config import build_config
from openclaw.daemon import DaemonService
from openclaw.logs import LoggingService
from openclaw.eliotutil import log
from openclaw.runtime import Runtime

class Reactor:
    "Records what the handlers schedule; a handler must do nothing else."
    def __init__(self):
        self.scheduled = []
    def callFromThread(self, f, *args):
        self.scheduled.append(f.__name__)
    def seconds(self):
        return 0.0

reactor = Reactor()
root = DaemonService(Runtime(reactor), reactor, None, build_config(), owns_process=True)
root._install_signal_handlers()
logging = LoggingService(sys.argv[1], "info", console=False)
logging.startService()
write = logging._combined._file.write
count = 0

def write_and_signal(data):
    # The signal arrives while this thread is inside the log write, holding its lock.
    global count
    count += 1
    os.kill(os.getpid(), signal.SIGTERM if count % 2 else signal.SIGHUP)
    write(data)

logging._combined._file.write = write_and_signal
for n in range(50):
    log("test:line", n=n)
logging.stopService()
print(len(reactor.scheduled), sorted(set(reactor.scheduled)))
"""


def test_a_signal_inside_a_log_write_never_hangs(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-c", SIGNAL_IN_WRITE, str(tmp_path)], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 1) == ["50", "['_stop_signalled', 'reload']\n"]


MODEL = f"""
gateway: {{listen: "tcp:0:interface=127.0.0.1", token: "{GATEWAY_TOKEN}"}}
web: {{listen: "tcp:0:interface=127.0.0.1"}}
daemon: {{drain_timeout: BUDGET}}
brain:
  providers: [{{kind: openai, model: slow, base_url: "URL", api_key: sk-test-0123456789abcdef, timeout: 60s,
               max_retries: 0}}]
"""


def model_daemon(tmp_path, daemons, llm, budget: str) -> tuple[str, HomeDaemon]:
    """A started daemon on a fresh home whose brain is the fake model, with drain budget ``budget``."""
    home = str(tmp_path / "home")
    os.makedirs(home, mode=0o700)
    write(os.path.join(home, "openclaw.yaml"), MODEL.replace("BUDGET", budget).replace("URL", llm.url))
    daemon = daemons(home)
    daemon.start()
    return home, daemon


@defer.inlineCallbacks
def send_while_thinking(llm: FakeLLM, daemon: HomeDaemon, text: str) -> defer.Deferred:
    client = yield wsclient.connect(daemon.gateway_port, GATEWAY_TOKEN)
    reply = yield client.request("subscribe", {"session": "webchat:test"})
    assert reply["ok"]
    ack = yield client.request("chat.send", {"text": text})
    assert ack["ok"], ack
    yield llm.received(1)
    return client, ack["payload"]["event_id"]


@pytest_twisted.inlineCallbacks
def test_sigterm_while_the_model_thinks_delivers_the_reply_before_exit(tmp_path, daemons, llm) -> None:
    home, daemon = model_daemon(tmp_path, daemons, llm, budget="30s")
    try:
        llm.answer(replace_delay(openai_text("thought it through"), 2.0))
        client, event_id = yield send_while_thinking(llm, daemon, "think slowly")
        daemon.signal(signal.SIGTERM)
        pushed = yield client.next()
        assert pushed["type"] == "event" and pushed["event"] == "chat.reply", pushed
        assert pushed["payload"]["text"] == "thought it through" and pushed["payload"]["reply_to"] == event_id
        yield until(daemon.exited, timeout=60)
        assert daemon.process.returncode == 0
    finally:
        daemon.ensure_dead()


@pytest_twisted.inlineCallbacks
def test_past_the_budget_the_work_is_abandoned_durable_and_answered_after_restart(tmp_path, daemons, llm) -> None:
    home, daemon = model_daemon(tmp_path, daemons, llm, budget="1s")
    try:
        llm.answer(replace_delay(openai_text("too late"), 30.0))
        client, event_id = yield send_while_thinking(llm, daemon, "think for ages")
        daemon.signal(signal.SIGTERM)
        yield until(daemon.exited, timeout=30)
        assert daemon.process.returncode == 0
        abandoned = [line for line in log_lines(home) if line.get("message_type") == "openclaw:pipeline:abandoned"]
        assert [line["count"] for line in abandoned] == [1]

        llm.answer(openai_text("answered after the restart"))
        daemon.start()
        client = yield wsclient.connect(daemon.gateway_port, GATEWAY_TOKEN)
        yield until(lambda: len(llm.requests) >= 2)

        for _ in range(300):  # the replayed message is answered once the model replies
            reply = yield client.request("chat.history", {"session": "webchat:test"})
            seen = [(m["role"], m["text"]) for m in reply["payload"]["messages"]]
            if ("assistant", "answered after the restart") in seen:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        assert seen.count(("user", "think for ages")) == 1 and ("assistant", "too late") not in seen
        yield client.close()
        daemon.signal(signal.SIGTERM)
        yield until(daemon.exited, timeout=60)
    finally:
        daemon.ensure_dead()


@pytest_twisted.inlineCallbacks
def test_a_second_sigterm_ends_the_drain_at_once(tmp_path, daemons, llm) -> None:
    home, daemon = model_daemon(tmp_path, daemons, llm, budget="10m")
    try:
        llm.answer(replace_delay(openai_text("never needed"), 600.0))
        client, _ = yield send_while_thinking(llm, daemon, "take forever")
        daemon.signal(signal.SIGTERM)
        yield until(lambda: any(line.get("message_type") == "openclaw:daemon:signal" for line in log_lines(home)))
        daemon.signal(signal.SIGTERM)
        yield until(daemon.exited, timeout=30)  # far below the model's 600 s and the 10 min budget
        assert daemon.process.returncode == 0
        effects = [line["effect"] for line in log_lines(home) if line.get("message_type") == "openclaw:daemon:signal"]
        assert effects == ["drain", "hurry"]
    finally:
        daemon.ensure_dead()


def replace_delay(canned, delay: float):
    canned.delay = delay
    return canned


def test_a_config_file_with_a_secret_readable_by_others_is_tightened_and_logged(tmp_path, daemons) -> None:
    home = str(tmp_path / "home")
    os.makedirs(home, mode=0o700)
    path = os.path.join(home, "openclaw.yaml")
    write(path, CONFIG)
    os.chmod(path, 0o644)
    daemon = daemons(home)
    daemon.start()
    assert os.stat(path).st_mode & 0o777 == 0o600
    [warning] = [line for line in log_lines(home) if line.get("message_type") == "openclaw:config:permissions"]
    assert warning["was"] == "0o644" and warning["now"] == "0o600" and warning["log_level"] == "warn"
    assert GATEWAY_TOKEN not in json.dumps(warning)
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(60) == 0
