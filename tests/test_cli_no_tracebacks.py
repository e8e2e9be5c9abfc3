"""
Every ``openclaw`` subcommand with a daemon up, with it down and with bad
arguments: one-line errors and the documented exit codes, never a traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from openclaw import cli
from tests.daemon import RunningDaemon, file_source
from tests.process import clean_env

OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")

# Each subcommand as an operator would type it (the home is added); chat is
# run on its own (it reads the terminal).
COMMANDS = {
    "status": [["status"]],
    "init": [["init"]],
    "version": [["version"]],
    "send": [["send", "hello", "--timeout", "20"]],
    "pairing": [["pairing", "list"], ["pairing", "approve", "000000"], ["pairing", "revoke", "telegram:1"]],
    "checks": [["checks"], ["checks", "run", "web"], ["checks", "run", "nosuch"]],
    "cron": [["cron", "list"]],
    "alerts": [["alerts"], ["alerts", "--since", "2h", "--all"]],
    "backup": [["backup", "verify", "/nonexistent/backup.tar"]],
    "heartbeat": [["heartbeat", "status"]],
    "reload": [["reload"]],
    "report": [["report"], ["report", "--today"], ["report", "1999-01-01"]],
    "service": [["service", "status"], ["service", "install", "--print"]],
    "config": [["config", "check"], ["config", "show"]],
    "doctor": [["doctor", "--timeout", "3"], ["doctor", "--json", "--timeout", "3"]],
    "mail": [["mail", "test"]],
    "logs": [["logs"], ["logs", "--tree"], ["logs", "--level", "warn"]],
    "console": [["console"]],
    "chat": [],
}

# Exit codes besides 0 and 1 that a command documents (``service status``: 3, not installed, as LSB's).
DOCUMENTED = {("service", "status"): (0, 1, 3)}


def allowed(argv: list[str]) -> tuple[int, ...]:
    return DOCUMENTED.get(tuple(argv), (0, 1))


CONFIG = "heartbeat:\n  every: 0\nchecks:\n  - {name: web, type: tcp, target: '127.0.0.1:9', every: 1h}\n"


def every_subcommand() -> set[str]:
    return set(cli.parser()._subparsers._group_actions[0].choices)


def run(home: str, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    if argv[0] not in ("version",):
        argv = [*argv, "--home", home] if argv[:2] != ["service", "install"] else [*argv, "--home", home]
    if argv[0] == "service":
        argv = [*argv, "--unit-dir", os.path.join(home, "units")]
    return subprocess.run([OPENCLAW, *argv], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=clean_env(XDG_CONFIG_HOME=os.path.join(home, "xdg"), **env))


def no_traceback(out: subprocess.CompletedProcess, argv: list[str]) -> None:
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "Unhandled" not in text, (argv, text)
    for line in out.stderr.splitlines():
        assert not line.startswith("  File "), (argv, out.stderr)


def test_the_table_covers_every_subcommand() -> None:
    assert set(COMMANDS) == every_subcommand()


def test_with_the_daemon_down(tmp_path) -> None:
    home = str(tmp_path / "home")
    file_source(home, CONFIG)
    for name, invocations in COMMANDS.items():
        for argv in invocations:
            out = run(home, argv)
            no_traceback(out, argv)
            assert out.returncode in allowed(argv), (argv, out.returncode, out.stderr)
            if name in ("send", "pairing", "cron", "alerts", "heartbeat", "reload", "report", "status", "console") \
                    or argv[:1] == ["checks"]:
                assert out.returncode == 1 and out.stderr.count("\n") == 1, (argv, out.stderr)


@pytest_twisted.inlineCallbacks
def test_with_the_daemon_up(tmp_path) -> None:
    home = str(tmp_path / "home")
    daemon = RunningDaemon(home, source=file_source(home, CONFIG))
    results = []
    try:
        for name, invocations in COMMANDS.items():
            for argv in invocations:
                out = yield deferToThread(run, home, argv)
                results.append((argv, out))
    finally:
        yield daemon.stop()
    codes = {tuple(argv): out.returncode for argv, out in results}
    for argv, out in results:
        no_traceback(out, argv)
        assert out.returncode in allowed(argv), (argv, out.returncode, out.stderr)
    assert codes[("cron", "list")] == 0 and codes[("heartbeat", "status")] == 0 and codes[("reload",)] == 0
    assert codes[("report", "--today")] == 0 and codes[("config", "show")] == 0 and codes[("logs", "--tree")] == 0
    by_argv = {tuple(argv): out for argv, out in results}
    assert by_argv[("report", "--today")].stdout.startswith("# ")
    assert "must be one of: web" in by_argv[("checks", "run", "nosuch")].stderr
    assert by_argv[("checks", "run", "web")].stdout.startswith("web")
    assert by_argv[("report", "1999-01-01")].stderr == "openclaw: no report for 1999-01-01\n"
    banner = [line for line in by_argv[("logs",)].stdout.splitlines() if "openclaw:daemon:where" in line]
    assert banner and f"auth_file={os.path.join(home, 'gateway.token')}" in banner[0] and "health=http://" in banner[0]


BAD = [["status", "--timeout", "soon"], ["send"], ["pairing", "bless"], ["checks", "explode"], ["cron", "remove"],
       ["report", "--today", "2026-01-01"], ["config", "fix"], ["doctor", "--bogus"], ["mail", "send"],
       ["logs", "--level", "loud"], ["chat", "--bogus"], ["nosuchcommand"], []]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "nothing")
def test_bad_arguments_exit_2_with_usage(tmp_path, argv) -> None:
    out = subprocess.run([OPENCLAW, *argv], capture_output=True, text=True, timeout=60, env=clean_env(
        OPENCLAW_HOME=str(tmp_path)))
    no_traceback(out, argv)
    assert out.returncode == 2, (argv, out.stderr)
    assert "usage:" in out.stderr or out.stderr.startswith("openclaw: "), out.stderr


def test_an_unwritable_home_and_a_broken_home_config_are_one_line(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "openclaw.yaml").write_text("gateway: [1, 2]\n")
    for argv in (["send", "hi"], ["status"], ["checks"], ["config", "check"]):
        out = run(str(home), argv)
        no_traceback(out, argv)
        assert out.returncode == 78 and out.stderr.startswith("config error: gateway: "), (argv, out.stderr)
    init = run("/proc/openclaw-cannot-be-here", ["init"])
    no_traceback(init, ["init"])
    assert init.returncode == 1 and init.stderr.count("\n") == 1


def test_a_closed_pipe_is_quiet(tmp_path) -> None:
    home = tmp_path / "home"
    file_source(str(home), CONFIG)
    pipe = subprocess.run(f"{OPENCLAW} config show --home {home} | head -1", shell=True, capture_output=True,
                          text=True, timeout=60, env=clean_env())
    assert pipe.stdout.startswith("# ") and pipe.stderr == ""


def test_chat_ends_on_a_wrong_token_and_is_interruptible_while_the_daemon_is_down(tmp_path) -> None:
    home = str(tmp_path / "home")
    file_source(home, CONFIG)
    # Down: chat keeps retrying (a restart is expected) until Ctrl-C, which ends it without a traceback.
    chat = subprocess.Popen([OPENCLAW, "chat", "--home", home], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(OPENCLAW_GATEWAY_TOKEN="x" * 20))
    try:
        while "retrying" not in chat.stdout.readline():
            pass
        chat.send_signal(signal.SIGINT)
        out, err = chat.communicate(timeout=60)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
    assert "Traceback" not in out + err


@pytest_twisted.inlineCallbacks
def test_chat_with_a_wrong_token_says_so_and_exits_1(tmp_path) -> None:
    home = str(tmp_path / "home")
    daemon = RunningDaemon(home, source=file_source(home, CONFIG))
    try:
        out = yield deferToThread(subprocess.run, [OPENCLAW, "chat", "--home", home], capture_output=True, text=True,
                                  timeout=60, stdin=subprocess.DEVNULL, env=clean_env(OPENCLAW_GATEWAY_TOKEN="w" * 20))
    finally:
        yield daemon.stop()
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    assert "cannot chat: wrong or missing token" in out.stdout


def test_timeouts_are_honoured_against_a_gateway_that_never_answers(tmp_path) -> None:
    home = str(tmp_path / "home")
    file_source(home, CONFIG)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/"
        for argv in (["send", "hi", "--timeout", "1"], ["checks", "--timeout", "1"], ["report", "--timeout", "1"]):
            out = run(home, [*argv, "--gateway", url], OPENCLAW_GATEWAY_TOKEN="t" * 20)
            no_traceback(out, argv)
            assert out.returncode == 1 and out.stderr == "openclaw: no answer from the daemon within 1s\n", (argv, out.stderr)
