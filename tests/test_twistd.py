"""
``twistd openclaw`` as a real process: plugin discovery, exit 78 on a bad
config, sd_notify datagrams in order, SIGTERM drains and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import zipfile

import pytest

from tests.process import OPENCLAW, TWISTD, DaemonProcess, clean_env, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "twistd-test-token-4f9a8b7c6d5e"


def twistd(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "openclaw", *args],
        capture_output=True, text=True, timeout=timeout, env=env or clean_env(), cwd="/",
    )


def test_twistd_lists_the_plugin_and_documents_the_options() -> None:
    out = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, timeout=30, cwd="/").stdout
    assert "openclaw" in out
    help_text = subprocess.run([TWISTD, "openclaw", "--help"], capture_output=True, text=True, timeout=30, cwd="/").stdout
    for option in ("--config", "--home", "--gateway", "--web", "--log-level"):
        assert option in help_text


def test_the_plugin_is_found_from_a_built_wheel(tmp_path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), ROOT],
        check=True, timeout=120, capture_output=True,
    )
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    target = tmp_path / "site"
    with zipfile.ZipFile(tmp_path / wheel) as z:
        names = z.namelist()
        z.extractall(target)
    assert "twisted/plugins/openclaw_plugin.py" in names
    assert "twisted/plugins/__init__.py" not in names
    assert "openclaw/system/templates/openclaw.service" in names
    probe = (
        "import sys; sys.path = [p for p in sys.path if p != %r and 'editable' not in p]; "
        "sys.path.insert(0, %r); "
        "from twisted.plugin import getPlugins; from twisted.application.service import IServiceMaker; "
        "import openclaw; print(openclaw.__file__); "
        "print([p.tapname for p in getPlugins(IServiceMaker)])"
    ) % (ROOT, str(target))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.stdout.splitlines()[0].startswith(str(target)), out
    assert "'openclaw'" in out.stdout


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("daemon:\n  drain_timeout: soon\n",
         'config error: daemon.drain_timeout: expected a duration from 0s to 1h, got "soon"'),
        ("gateway:\n  listn: x\n", "config error: gateway.listn: unknown key"),
        ("web:\n  listen: tcp:notaport\n", "config error: web.listen: expected an endpoint"),
    ],
)
def test_bad_config_exits_78_with_one_line_before_binding(tmp_path, yaml_text, expected) -> None:
    config = tmp_path / "openclaw.yaml"
    config.write_text(yaml_text)
    result = twistd("--config", str(config), "--home", str(tmp_path / "home"))
    assert result.returncode == 78, result
    assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content, env, args, expected",
    [
        (b"log: {level: \xff\xfe}\n", {}, (), "not UTF-8 text (byte 0xff at offset 13)"),
        (b"heartbeat: {every: " + b"9" * 400 + b"}\n", {}, (), "heartbeat.every: expected a duration from 1s to 7d"),
        (b"heartbeat: {every: 0.0000001}\n", {}, (), "heartbeat.every: expected a duration from 1s to 7d"),
        (b"gateway: {max_frame_bytes: 10000000000000000000000000}\n", {}, (), "gateway.max_frame_bytes: expected a size"),
        (b"gateway: {max_frame_bytes: 0}\n", {}, (), "gateway.max_frame_bytes: expected a size from 256B to 64MiB"),
        (b"store: {history: 10000000000000000000000000}\n", {}, (), "store.history: expected a whole number"),
        (b"", {"OPENCLAW_GATEWAY_LISTEN": "tcp:99999"}, (), "OPENCLAW_GATEWAY_LISTEN (gateway.listen): the port must"),
        (b"", {}, ("--web", "tcp:-1"), "web.listen: the port must be from 1 to 65535"),
        (b"[" * 100000, {}, (), "invalid YAML"),
    ],
)
def test_values_out_of_range_exit_78_before_the_home_is_created(tmp_path, content, env, args, expected) -> None:
    config = tmp_path / "openclaw.yaml"
    config.write_bytes(content)
    home = tmp_path / "home"
    result = twistd("--config", str(config), "--home", str(home), *args, env=clean_env(**env))
    assert result.returncode == 78, result
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not home.exists()
    assert not (tmp_path / "home").exists()


def test_bad_option_and_environment_also_exit_78(tmp_path) -> None:
    result = twistd("--home", str(tmp_path), "--gateway", "tcp:nope")
    assert result.returncode == 78 and result.stderr.startswith("config error: gateway.listen:")
    result = twistd("--home", str(tmp_path), env=clean_env(OPENCLAW_LOG_LEVEL="loud"))
    assert result.returncode == 78 and "OPENCLAW_LOG_LEVEL (log.level)" in result.stderr


def test_a_busy_port_stops_the_start_with_one_line(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = twistd("--home", str(tmp_path), "--web", f"tcp:{port}:interface=127.0.0.1",
                        "--gateway", f"tcp:{free_port()}:interface=127.0.0.1")
    assert result.returncode == 1
    # twistd has already routed stderr into its log (stdout under -n).
    assert f"openclaw: web.listen: cannot listen on tcp:{port}:interface=127.0.0.1" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_run_notify_health_sigterm_drain_exit_0(tmp_path) -> None:
    home = tmp_path / "home"
    daemon = DaemonProcess(tmp_path, str(home), WATCHDOG_USEC="2000000", OPENCLAW_GATEWAY_TOKEN=TOKEN)
    try:
        before_ready = daemon.start()
        assert not any(line == "STOPPING=1" for line in before_ready)
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web}/health", timeout=10) as response:
            health = json.load(response)
            assert response.status == 200
        assert health["status"] == "ok"
        assert health["limits"]["nofile_soft"] == health["limits"]["nofile_hard"]
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web}/readyz", timeout=10) as response:
            assert response.status == 200
        sent = subprocess.run([OPENCLAW, "send", "/help", "--home", str(home), "--gateway", daemon.url],
                              capture_output=True, text=True, timeout=60, env=clean_env(OPENCLAW_GATEWAY_TOKEN=TOKEN))
        assert sent.returncode == 0 and "/status" in sent.stdout, sent
        daemon.process.send_signal(signal.SIGTERM)
        after = daemon.notify.until("STOPPING=1")
        assert "WATCHDOG=1" in before_ready + after
        daemon.process.wait(60)
        output = daemon.output()
        process = daemon.process
    finally:
        daemon.ensure_dead()
    assert process.returncode == 0, output.decode()
    assert "openclaw:daemon:ready" in output.decode()
    state = json.loads((home / "data" / "gateway-state.json").read_text())
    assert state["version"] == 1
    combined = (home / "logs" / "combined.log").read_bytes()
    assert TOKEN.encode() not in combined and TOKEN.encode() not in output
    lines = [json.loads(line) for line in combined.splitlines()]
    assert all("log_level" in line for line in lines)
    stops = [line["service"] for line in lines
             if line.get("action_type") == "openclaw:service:stop" and line.get("action_status") == "started"]
    assert stops == ["systemd", "cron", "reports", "heartbeat", "checks", "prune", "notifier", "pipeline", "outbox", "connectors",
                     "console", "gateway", "web", "state", "brain", "cluster", "store", "logging"]
