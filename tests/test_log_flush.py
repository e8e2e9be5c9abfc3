"""
Buffered log writes: info records wait for a short timer, warn and error
go at once, the buffer is bounded, rotation ends files where unbuffered
writes would, and nothing buffered is lost on stop, reload, exit or SIGTERM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock

from openclaw import logs
from openclaw.config import build_config
from openclaw.eliotutil import log
from openclaw.logs import FLUSH_INTERVAL, MAX_BUFFERED_BYTES, LoggingService, _JsonLinesFile
from tests import wsclient
from tests.process import DaemonProcess

TOKEN = "flush-test-token-0123456789ab"


@pytest.fixture(autouse=True)
def _on_the_reactor_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records count as logged on the reactor thread (the only one that buffers)."""
    monkeypatch.setattr(logs, "isInIOThread", lambda: True)


def numbers(path: Path, kind: str = "test:n") -> list[int]:
    if not path.exists():
        return []
    return [m["n"] for m in map(json.loads, path.read_text().splitlines()) if m.get("message_type") == kind]


def started(tmp_path: Path, clock: Clock, **kwargs: Any) -> LoggingService:
    service = LoggingService(str(tmp_path), "info", console=False, clock=clock, **kwargs)
    service.startService()
    return service


def test_info_waits_for_the_timer_and_a_warning_takes_it_along(tmp_path: Path) -> None:
    clock = Clock()
    service = started(tmp_path, clock)
    combined = tmp_path / "logs" / "combined.log"
    for n in range(5):
        log("test:n", "info", n=n)
    assert numbers(combined) == [] and len(clock.getDelayedCalls()) == 1  # one timer for the burst
    clock.advance(FLUSH_INTERVAL)
    assert numbers(combined) == [0, 1, 2, 3, 4] and not clock.getDelayedCalls()
    log("test:n", "info", n=5)
    log("test:n", "warn", n=6)  # at once, after what waited before it
    assert numbers(combined) == list(range(7))
    service.stopService()


def test_a_burst_is_one_write(tmp_path: Path) -> None:
    clock = Clock()
    service = started(tmp_path, clock)
    writes: list[bytes] = []
    real = service._combined._file.write
    service._combined._file.write = lambda data: (writes.append(data), real(data))[1]
    for n in range(100):
        log("test:n", "info", n=n)
    clock.advance(FLUSH_INTERVAL)
    assert len(writes) == 1 and writes[0].count(b"\n") == 100
    service.stopService()


def test_the_buffer_is_bounded(tmp_path: Path) -> None:
    clock = Clock()
    service = started(tmp_path, clock)
    largest = 0
    for n in range(3000):  # about 300 KB, never a timer tick
        log("test:n", "info", n=n, padding="x" * 64)
        largest = max(largest, service._combined._pending_bytes)
    assert largest < MAX_BUFFERED_BYTES
    assert len(numbers(tmp_path / "logs" / "combined.log")) > 3000 - MAX_BUFFERED_BYTES // 64
    service.stopService()
    assert numbers(tmp_path / "logs" / "combined.log") == list(range(3000))


def test_stop_and_reload_write_the_buffer(tmp_path: Path) -> None:
    clock = Clock()
    service = started(tmp_path, clock)
    combined = tmp_path / "logs" / "combined.log"
    log("test:n", "info", n=0)
    service.reconfigure(build_config({"log": {"max_bytes": "1MiB"}}))
    assert numbers(combined) == [0]
    log("test:n", "info", n=1)
    service.stopService()
    assert numbers(combined) == [0, 1] and not clock.getDelayedCalls()


def test_flush_interval_zero_writes_each_record(tmp_path: Path) -> None:
    clock = Clock()
    service = started(tmp_path, clock, flush_interval=0)
    log("test:n", "info", n=0)
    assert numbers(tmp_path / "logs" / "combined.log") == [0] and not clock.getDelayedCalls()
    service.stopService()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.booleans()), min_size=1, max_size=80), st.integers(200, 2000))
def test_buffered_rotation_ends_files_where_unbuffered_writes_do(tmp_path_factory, lines, limit) -> None:
    """``(length, flush after it)`` pairs: the same files, byte for byte, as one write per line."""
    unbuffered = tmp_path_factory.mktemp("each")
    buffered = tmp_path_factory.mktemp("buffered")
    each = _JsonLinesFile(str(unbuffered), "combined.log", limit, 100)
    batched = _JsonLinesFile(str(buffered), "combined.log", limit, 100)
    for n, (length, flush) in enumerate(lines):
        line = (f"{n}:" + "x" * length)[:length - 1].encode() + b"\n"
        each.write(line)
        batched.write(line, now=False)
        if flush:
            batched.flush()
    each.close()
    batched.close()
    files = lambda d: {name: (d / name).read_bytes() for name in os.listdir(d)}  # noqa: E731
    assert files(buffered) == files(unbuffered)


AT_EXIT = r"""
import sys
from twisted.internet.task import Clock
from openclaw import logs
from openclaw.eliotutil import log
logs.isInIOThread = lambda: True
service = logs.LoggingService(sys.argv[1], "info", console=False, clock=Clock())
service.startService()
for n in range(20):
    log("test:n", "info", n=n)
raise SystemExit(3)  # an exit on an error: no stopService, no timer
"""


def test_an_exit_without_a_stop_still_writes_the_buffer(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", AT_EXIT, str(tmp_path)], capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert result.returncode == 3, result.stderr
    assert numbers(tmp_path / "logs" / "combined.log") == list(range(20))


@pytest_twisted.inlineCallbacks
def test_sigterm_right_after_a_burst_loses_no_record(tmp_path: Path) -> None:
    # A flush interval longer than the whole drain: only the stop can write the burst.
    daemon = DaemonProcess(tmp_path, str(tmp_path / "home"), OPENCLAW_GATEWAY_TOKEN=TOKEN,
                           OPENCLAW_LOG_FLUSH_INTERVAL="5s")
    try:
        daemon.start()
        client = yield wsclient.connect(daemon.gateway, TOKEN)
        acks = yield defer.gatherResults([client.request("chat.send", {"text": f"/help {n}"}) for n in range(40)])
        code, output = daemon.stop()
    finally:
        daemon.ensure_dead()
    assert code == 0, output.decode()
    records = [json.loads(line) for line in (tmp_path / "home" / "logs" / "combined.log").read_text().splitlines()]
    acked = {ack["payload"]["event_id"] for ack in acks}
    handled = {m["event_id"] for m in records
               if m.get("action_type") == "openclaw:message" and m.get("action_status") == "started"}
    assert acked <= handled, f"{len(acked - handled)} of {len(acked)} messages missing from the log"
    stops = [m["service"] for m in records
             if m.get("action_type") == "openclaw:service:stop" and m.get("action_status") == "started"]
    assert stops[-1] == "logging"  # logged a moment before the log closed
