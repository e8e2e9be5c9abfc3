"""gateway-state.json: atomic saves, restore, and corrupt files moved aside."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from openclaw import state
from openclaw.runtime import Runtime
from openclaw.state import STATE_VERSION, StateService, read_state, write_atomic
from tests.strategies import state_sessions


def service(tmp_path, clock=None, digest="d1", every=60.0) -> StateService:
    runtime = Runtime(clock or Clock(), config_digest=digest)
    return StateService(runtime, str(tmp_path / "data" / "gateway-state.json"), every)


def test_save_at_stop_then_restore_sessions_and_heartbeat(tmp_path) -> None:
    clock = Clock()
    clock.advance(1_700_000_000)
    first = service(tmp_path, clock)
    first.startService()
    first.runtime.sessions.touch("webchat:a", "webchat", clock.seconds(), "tcp:127.0.0.1:5")
    first.runtime.heartbeat(clock.seconds() - 10)
    first.stopService()
    saved = json.loads((tmp_path / "data" / "gateway-state.json").read_text())
    assert saved["version"] == STATE_VERSION and saved["config_digest"] == "d1"
    assert oct(os.stat(tmp_path / "data" / "gateway-state.json").st_mode & 0o777) == "0o600"

    second = service(tmp_path, clock)
    second.startService()
    assert second.runtime.sessions.snapshot()["webchat:a"]["peer"] == "tcp:127.0.0.1:5"
    assert second.runtime.last_heartbeat == clock.seconds() - 10
    second.stopService()


def test_periodic_save_on_the_clock(tmp_path) -> None:
    clock = Clock()
    svc = service(tmp_path, clock, every=60)
    svc.startService()
    path = tmp_path / "data" / "gateway-state.json"
    assert not path.exists()
    svc.runtime.sessions.touch("telegram:1", "telegram", 5.0)
    clock.advance(60)
    assert "telegram:1" in path.read_text()
    svc.stopService()


HOSTILE = [
    b"[" * 100_000 + b"]" * 100_000,  # nesting that crashed json.loads with RecursionError
    b'{"version": 1, "sessions": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
    b'{"version": 1, "sessions": {"s": {"channel": "c", "first_seen": 1, "last_active": ' + b"[" * 50 + b"]" * 50 + b"}}}",
    b'{"version": 1, "last_heartbeat": ' + b"9" * 400 + b"}",
    b'{"version": 1, "last_heartbeat": 1e999}',
    b'{"version": 1, "sessions": []}',
    b'{"version": 1, "sessions": {"s": {"channel": "c", "first_seen": 1, "last_active": 2, "extra": {}}}}',
    b'{"version": 1, "config_digest": {"x": 1}}',
    b'{"version": 1, "surprise": true}',
    b"null",
]


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"version": 99}', b"\x00\xff", *HOSTILE])
def test_corrupt_file_is_moved_aside_with_a_warning(tmp_path, content) -> None:
    path = tmp_path / "data" / "gateway-state.json"
    path.parent.mkdir()
    path.write_bytes(content)
    clock = Clock()
    clock.advance(1234)
    svc = service(tmp_path, clock)
    svc.startService()
    assert len(svc.runtime.sessions) == 0
    assert (tmp_path / "data" / "gateway-state.json.corrupt.1234").read_bytes() == content
    svc.stopService()
    assert json.loads(path.read_text())["version"] == STATE_VERSION


def test_a_file_over_the_size_cap_is_moved_aside_unread(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(state, "MAX_STATE_BYTES", 100)
    path = tmp_path / "s.json"
    path.write_bytes(b'{"version": 1, "saved_at": ' + b"1" * 120 + b"}")
    found, problem = read_state(str(path), 7)
    assert found is None and problem.startswith("larger than 100 bytes")
    assert (tmp_path / "s.json.corrupt.7").exists() and not path.exists()


@settings(max_examples=200)
@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
).map(lambda v: json.dumps({"version": 1, "sessions": v}).encode()))
def test_any_content_is_restored_or_moved_aside_never_raised(content) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "s.json")
        with open(path, "wb") as f:
            f.write(content)
        found, problem = read_state(path, 1)
        if found is None:
            assert problem and os.path.exists(path + ".corrupt.1") and not os.path.exists(path)
        else:
            assert problem is None
            runtime = Runtime(Clock())
            assert runtime.sessions.restore(found.get("sessions")) == len(found.get("sessions", {}))


def test_missing_file_is_not_a_problem(tmp_path) -> None:
    assert read_state(str(tmp_path / "none.json"), 0) == (None, None)


def test_write_atomic_leaves_no_temp_files(tmp_path) -> None:
    path = str(tmp_path / "x" / "s.json")
    write_atomic(path, b"one")
    write_atomic(path, b"two")
    assert open(path, "rb").read() == b"two"
    assert os.listdir(tmp_path / "x") == ["s.json"]


@settings(max_examples=100)
@given(state_sessions())
def test_restore_keeps_well_formed_sessions_and_skips_the_rest(saved) -> None:
    runtime = Runtime(Clock())
    restored = runtime.sessions.restore(saved)
    good = {k for k, v in saved.items() if isinstance(v, dict) and "channel" in v}
    assert restored == len(good) == len(runtime.sessions)
    assert set(runtime.sessions.snapshot()) == good


def test_a_daemon_whose_state_file_is_nested_100000_deep_starts_and_answers(tmp_path) -> None:
    import subprocess
    import urllib.request

    from tests.process import OPENCLAW, DaemonProcess, clean_env

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "gateway-state.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    token = "state-test-token-0123456789"
    daemon = DaemonProcess(tmp_path, str(home), OPENCLAW_GATEWAY_TOKEN=token)
    try:
        daemon.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web}/livez", timeout=10) as response:
            assert response.status == 200
        sent = subprocess.run([OPENCLAW, "send", "/help", "--home", str(home), "--gateway", daemon.url],
                              capture_output=True, text=True, timeout=60, env=clean_env(OPENCLAW_GATEWAY_TOKEN=token))
        assert sent.returncode == 0 and "/status" in sent.stdout, sent
        code, output = daemon.stop()
    finally:
        daemon.ensure_dead()
    assert code == 0 and b"Traceback" not in output and b"openclaw:state:corrupt" in output, output.decode()
    assert [p.name for p in (home / "data").iterdir() if ".corrupt." in p.name]
    assert json.loads((home / "data" / "gateway-state.json").read_text())["version"] == STATE_VERSION
