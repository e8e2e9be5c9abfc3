"""``openclaw doctor`` against real files, real ports, a real daemon and the fake platform servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import pytest_twisted
import yaml
from twisted.internet.threads import deferToThread

from openclaw.doctor.findings import FAIL, OK, WARN, Context, Finding, render
from openclaw.doctor.local import check_nofile, port_holder
from openclaw.config import Config
from tests.daemon import RunningDaemon, file_source
from tests.process import clean_env, free_port
from tests.slack_server import SlackServer
from tests.telegram_server import TOKEN, BotAPI

OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")


def doctor(home: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPENCLAW, "doctor", "--home", home, "--json", "--timeout", "5", *args],
                          capture_output=True, text=True, timeout=120, env=clean_env(**env))


def findings(run: subprocess.CompletedProcess) -> list[dict]:
    assert "Traceback" not in run.stdout + run.stderr
    return json.loads(run.stdout)["findings"]


def titled(found: list[dict], title: str) -> list[dict]:
    return [f for f in found if f["title"] == title]


def write_config(home, document: dict) -> str:
    os.makedirs(home, mode=0o700, exist_ok=True)
    path = os.path.join(home, "openclaw.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(document, f)
    os.chmod(path, 0o600)
    return path


def test_every_config_error_at_once_and_exit_1(tmp_path) -> None:
    home = str(tmp_path / "home")
    write_config(home, {"gateway": {"listen": 3, "nope": 1}, "web": {"listen": "x"}})
    run = doctor(home)
    assert run.returncode == 1
    errors = [f for f in titled(findings(run), "config") if f["status"] == FAIL]
    assert len(errors) == 3 and all("openclaw config check" in f["fix"] for f in errors)
    # The other checks still ran, on the defaults.
    assert titled(findings(run), "disk") and titled(findings(run), "open files")


def test_a_fresh_home_passes_with_warnings(tmp_path) -> None:
    run = doctor(str(tmp_path / "fresh"))
    assert run.returncode == 0, run.stdout
    found = findings(run)
    assert {f["status"] for f in found} <= {OK, WARN}
    assert titled(found, "daemon")[0]["status"] == WARN and "twistd -n openclaw" in titled(found, "daemon")[0]["fix"]


def test_a_readable_token_file_and_a_corrupt_store_fail(tmp_path) -> None:
    home = tmp_path / "home"
    os.makedirs(home / "data", mode=0o700)
    (home / "gateway.token").write_text("a" * 32)
    os.chmod(home / "gateway.token", 0o644)
    (home / "data" / "openclaw.sqlite3").write_bytes(b"SQLite format 3\0" + b"\xff" * 4096)
    run = doctor(str(home))
    assert run.returncode == 1
    found = findings(run)
    secret = titled(found, "secret file")[0]
    assert secret["status"] == FAIL and secret["fix"] == f"chmod 600 {home / 'gateway.token'}"
    assert titled(found, "store")[0]["status"] == FAIL


def test_a_held_port_names_its_process(tmp_path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert port_holder(port) == f"pid {os.getpid()} ({open('/proc/self/comm').read().strip()})"
        home = str(tmp_path / "home")
        write_config(home, {"gateway": {"listen": f"tcp:{port}:interface=127.0.0.1"}})
        run = doctor(home)
    assert run.returncode == 1
    gateway = titled(findings(run), "gateway port")[0]
    assert gateway["status"] == FAIL and f"pid {os.getpid()}" in gateway["detail"]


@pytest_twisted.inlineCallbacks
def test_connector_credentials_by_their_cheapest_call(tmp_path) -> None:
    telegram, slack = BotAPI().start(), SlackServer().start()
    try:
        home = str(tmp_path / "home")
        write_config(home, {"connectors": {
            "telegram": {"enabled": True, "api_url": telegram.url},
            "slack": {"enabled": True, "api_url": slack.api_url, "app_token": "xapp-x", "bot_token": "xoxb-WRONG-secret"},
        }})
        run = yield deferToThread(doctor, home, TELEGRAM_BOT_TOKEN=TOKEN)
    finally:
        yield telegram.stop()
        yield slack.stop()
    assert run.returncode == 1
    found = findings(run)
    assert titled(found, "connector telegram")[0]["status"] == OK
    refused = titled(found, "connector slack")[0]
    assert refused["status"] == FAIL and "invalid_auth" in refused["detail"]
    assert "xoxb-WRONG-secret" not in run.stdout and TOKEN not in run.stdout
    assert ("auth.test", "xoxb-WRONG-secret") in slack.calls


@pytest_twisted.inlineCallbacks
def test_the_running_daemon_its_digest_and_services(tmp_path) -> None:
    home = str(tmp_path / "home")
    daemon = RunningDaemon(home, source=file_source(home, "heartbeat:\n  every: 0\n"))
    try:
        run = yield deferToThread(doctor, home)
        with open(os.path.join(home, "openclaw.yaml"), "a", encoding="utf-8") as f:
            f.write("lanes:\n  max_queue: 7\n")
        changed = yield deferToThread(doctor, home)
    finally:
        yield daemon.stop()
    found = findings(run)
    assert titled(found, "daemon")[0]["status"] == OK, found
    assert not titled(found, "daemon config")
    assert titled(found, "service gateway")[0]["status"] == OK
    assert titled(found, "token")[0]["status"] == OK
    drift = titled(findings(changed), "daemon config")
    assert drift and drift[0]["status"] == WARN and "openclaw reload" in drift[0]["fix"]


def test_the_open_files_limit_and_rendering() -> None:
    found = check_nofile(Context("/", None, Config(), {}))
    assert found[0].title == "open files" and found[0].status in (OK, WARN)
    text = render([Finding(FAIL, "x", "broken", "mend it"), Finding(OK, "y", "fine", "unused")])
    assert text == "fail  x: broken\n      fix: mend it\nok    y: fine"


@pytest.mark.parametrize("json_flag", [True, False])
def test_plain_and_json_output_agree_on_the_exit_status(tmp_path, json_flag) -> None:
    home = str(tmp_path / "home")
    write_config(home, {"web": {"listen": "x"}})
    args = [OPENCLAW, "doctor", "--home", home] + (["--json"] if json_flag else [])
    run = subprocess.run(args, capture_output=True, text=True, timeout=120, env=clean_env())
    assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
    assert ('"status": "fail"' if json_flag else "fail  config: config error: web.listen") in run.stdout


@pytest_twisted.inlineCallbacks
def test_model_providers_by_their_model_list(tmp_path) -> None:
    from tests.llm_servers import KEY, Canned, FakeLLM

    llm = FakeLLM().start()
    llm.answer(Canned(200, {"data": []}), Canned(401, {"error": {"message": "invalid x-api-key"}}))
    try:
        home = str(tmp_path / "home")
        write_config(home, {"brain": {"providers": [
            {"kind": "openai", "model": "m1", "base_url": llm.url, "api_key_env": "TEST_LLM_KEY"},
            {"kind": "anthropic", "model": "m2", "base_url": llm.url, "api_key_env": "TEST_LLM_KEY"},
        ]}})
        run = yield deferToThread(doctor, home, TEST_LLM_KEY=KEY)
    finally:
        yield llm.stop()
    found = findings(run)
    assert titled(found, "provider openai m1")[0]["status"] == OK
    refused = titled(found, "provider anthropic m2")[0]
    assert refused["status"] == FAIL and "HTTP 401" in refused["detail"] and run.returncode == 1
    assert [r.path for r in llm.requests] == ["/models", "/v1/models"]
    assert llm.requests[0].headers["authorization"] == f"Bearer {KEY}" and llm.requests[1].headers["x-api-key"] == KEY
    assert KEY not in run.stdout


def test_the_mail_watch_login_and_mail_test(tmp_path) -> None:
    from tests.imap_server import PASSWORD, USER, running_dovecot

    with running_dovecot() as server:
        home = str(tmp_path / "home")
        write_config(home, {"mail": [
            {"name": "good", "host": "127.0.0.1", "port": server.port, "tls": "none", "user": USER, "password_env": "MAIL_PW"},
            {"name": "bad", "host": "127.0.0.1", "port": server.port, "tls": "none", "user": USER, "password": "wrong-pw-x"},
        ]})
        run = doctor(home, MAIL_PW=PASSWORD)
        one = subprocess.run([OPENCLAW, "mail", "test", "good", "--home", home], capture_output=True, text=True,
                             timeout=120, env=clean_env(MAIL_PW=PASSWORD))
        both = subprocess.run([OPENCLAW, "mail", "test", "--home", home], capture_output=True, text=True,
                              timeout=120, env=clean_env(MAIL_PW=PASSWORD))
    found = findings(run)
    assert titled(found, "mail good")[0]["status"] == OK
    assert titled(found, "mail bad")[0]["status"] == FAIL and "wrong-pw-x" not in run.stdout
    assert one.returncode == 0 and one.stdout.startswith("ok    mail good: ") and "Traceback" not in one.stderr
    assert both.returncode == 1 and "fail  mail bad" in both.stdout and PASSWORD not in both.stdout


def test_redis_reachable_with_its_version(tmp_path) -> None:
    home = str(tmp_path / "home")
    write_config(home, {"store": {"url": "redis://127.0.0.1:6379/0"}})
    found = findings(doctor(home))
    store = titled(found, "store")[0]
    assert store["status"] == OK and store["detail"].startswith("Redis 127.0.0.1:6379 ")
    assert titled(found, "store persistence")[0]["status"] in (OK, WARN)
    write_config(home, {"store": {"url": f"redis://127.0.0.1:{free_port()}/0"}})
    down = doctor(home)
    assert down.returncode == 1 and titled(findings(down), "store")[0]["status"] == FAIL


def test_an_installed_unit_is_compared_with_what_install_writes(tmp_path) -> None:
    home, xdg = str(tmp_path / "home"), str(tmp_path / "xdg")
    # --unit-dir: where the user manager reads units (here no systemd runs, so install wants it named).
    installed = subprocess.run([OPENCLAW, "service", "install", "--home", home, "--unit-dir",
                                os.path.join(xdg, "systemd", "user")], capture_output=True, text=True,
                               timeout=60, env=clean_env(XDG_CONFIG_HOME=xdg))
    assert installed.returncode == 0, installed.stderr
    current = titled(findings(doctor(home, XDG_CONFIG_HOME=xdg)), "service unit")[0]
    assert current["status"] == OK and current["detail"].endswith("is current")
    unit = os.path.join(xdg, "systemd", "user", "openclaw.service")
    with open(unit, "a", encoding="utf-8") as f:
        f.write("# edited\n")
    stale = titled(findings(doctor(home, XDG_CONFIG_HOME=xdg)), "service unit")[0]
    assert stale["status"] == WARN and "service install --force" in stale["fix"]
