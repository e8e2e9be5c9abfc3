"""
``docs/quickstart.md`` is run: every command of every ``sh`` block, in order,
as a new user would type them (``HOME`` is a fresh directory), against a
local Bot API in place of Telegram and a local site in place of the watched
one.  Where the page asks for a person (send the bot a message), the test
does it through the fake Bot API.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.process import NotifySocket, clean_env
from tests.telegram_server import TOKEN, BotAPI, text_update
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "quickstart.md"


def blocks(text: str) -> list[list[str]]:
    """The commands of each ``sh`` block; a heredoc stays one command with its body."""
    found = []
    for body in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        commands: list[str] = []
        heredoc: list[str] | None = None
        for line in body.splitlines():
            if heredoc is not None:
                heredoc.append(line)
                if line == "EOF":
                    commands.append("\n".join(heredoc))
                    heredoc = None
            elif "<<'EOF'" in line:
                heredoc = [line]
            elif line.strip():
                commands.append(line)
        found.append(commands)
    return found


class Site200(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"


def test_the_page_has_the_steps_this_test_walks_through() -> None:
    commands = blocks(PAGE.read_text("utf-8"))
    assert [c[0].split()[0:2] for c in commands] == [
        ["make", "run"], [".venv/bin/openclaw", "status"], [".venv/bin/openclaw", "init"],
        [".venv/bin/openclaw", "pairing"], ["cat", ">>"], [".venv/bin/openclaw", "service"],
        [".venv/bin/openclaw", "backup"],
    ]


@pytest_twisted.inlineCallbacks
def test_every_command_of_the_quickstart_works_as_written(tmp_path) -> None:
    api = BotAPI().start()
    site = reactor.listenTCP(0, Site(Site200()), interface="127.0.0.1")
    home = tmp_path / "user"
    home.mkdir()
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    env = clean_env(HOME=str(home), NOTIFY_SOCKET=notify.path)
    substitutions = {
        "https://api.telegram.org": api.url,
        "123456:ABC-your-bot-token": TOKEN,
        "https://example.org/": f"http://127.0.0.1:{site.getHost().port}/",
        # The page's daemon uses the default ports; here any free ones (the CLI finds them in daemon.json).
        "make run": 'make run ARGS="--gateway tcp:0:interface=127.0.0.1 --web tcp:0:interface=127.0.0.1"',
    }
    ran: list[tuple[str, subprocess.CompletedProcess]] = []

    def run(command: str) -> subprocess.CompletedProcess:
        for old, new in substitutions.items():
            command = command.replace(old, new)
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                                env=env, cwd=ROOT)
        ran.append((command, result))
        assert "Traceback" not in result.stdout + result.stderr, (command, result)
        assert result.returncode == 0, (command, result)
        return result

    start, chat, phone, pairing, checks, service, backup = blocks(PAGE.read_text("utf-8"))
    daemon = None
    try:
        # 1. make run, in the background: the test is the "second terminal".
        daemon = subprocess.Popen(
            ["bash", "-c", substitutions["make run"]], cwd=ROOT, env=env, start_new_session=True,
            stdout=open(tmp_path / "make-run.log", "wb"), stderr=subprocess.STDOUT)
        yield deferToThread(notify.until, "READY=1")
        # 2. First chat.
        for command in chat:
            yield deferToThread(run, command)
        assert "openclaw ok" in ran[0][1].stdout and "/help" in ran[1][1].stdout
        # 3. Telegram: the bot connects; a message from the phone gets a pairing code.
        for command in phone:
            yield deferToThread(run, command)
        assert "reload applied" in ran[-1][1].stdout and "connectors" in ran[-1][1].stdout
        yield until(lambda: api.calls["getUpdates"] >= 1, what="the bot polling")
        api.push(text_update(42, "hi"))
        yield until(lambda: any("pairing approve" in t for t in api.texts(42)), what="a pairing code")
        code = re.search(r"pairing approve (\d{6})", " ".join(api.texts(42))).group(1)
        substitutions["pairing approve 123456"] = f"pairing approve {code}"
        for command in pairing:
            yield deferToThread(run, command)
        assert "approved telegram:42" in ran[-2][1].stdout and "telegram:42" in ran[-1][1].stdout
        answered = len(api.texts(42))
        api.push(text_update(42, "/help"))
        yield until(lambda: len(api.texts(42)) > answered, what="the assistant answering on Telegram")
        # 4. First check, first alert: on the phone.
        for command in checks:
            yield deferToThread(run, command)
        assert "reload applied" in ran[-2][1].stdout
        yield until(lambda: any("nas is DOWN" in t for t in api.texts(42)), timeout=30, what="the alert on Telegram")
        assert sum("nas is DOWN" in t for t in api.texts(42)) == 1
        # 5. Service install: the unit, and a plain word where no systemd runs.
        for command in service:
            yield deferToThread(run, command)
        assert "[Service]" in ran[-2][1].stdout and "ExecReload=" in ran[-2][1].stdout
        # 6. Backup.
        for command in backup:
            yield deferToThread(run, command)
        archive = home / "openclaw-backup.tar"
        assert archive.exists() and archive.stat().st_mode & 0o777 == 0o600
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            yield deferToThread(daemon.wait, 60)
        notify.close()
        yield site.stopListening()
        yield api.stop()
