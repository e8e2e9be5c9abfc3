"""
The notify protocol against real AF_UNIX datagram sockets, and the pure
watchdog-interval rule.
"""

import os
import socket
import uuid
from collections.abc import Iterator

import eliot
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw.system.sdnotify import SDNotifier, format_message, watchdog_interval
from tests.notify import received


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace; yields its ``@name``."""
    name = f"openclaw-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    yield sock, "@" + name
    sock.close()


@pytest.fixture
def eliot_messages() -> Iterator[list[dict]]:
    messages: list[dict] = []
    eliot.add_destinations(messages.append)
    yield messages
    eliot.remove_destination(messages.append)


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}])
def test_no_socket_no_notifier(environ: dict[str, str]) -> None:
    assert SDNotifier.from_environ(environ) is None


def test_unsupported_address_is_none_and_warned(eliot_messages: list[dict]) -> None:
    assert SDNotifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}) is None
    [warning] = [m for m in eliot_messages if m.get("message_type") == "openclaw:systemd:unsupported-socket"]
    assert warning["log_level"] == "warn"


def test_abstract_address_gets_leading_nul() -> None:
    notifier = SDNotifier.from_environ({"NOTIFY_SOCKET": "@abc"})
    assert notifier is not None and notifier.address == "\0abc"


def test_path_socket_receives_each_call_in_order(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SDNotifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier is not None
    assert notifier.ready()
    notifier.status("two\nlines\r\nhere")
    notifier.watchdog()
    notifier.stopping()
    notifier.send(STATUS="x", ERRNO=5)
    assert received(sock) == [
        b"READY=1\n",
        b"STATUS=two lines here\n",
        b"WATCHDOG=1\n",
        b"STOPPING=1\n",
        b"STATUS=x\nERRNO=5\n",
    ]


def test_abstract_socket_receives(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    notifier = SDNotifier.from_environ({"NOTIFY_SOCKET": name})
    assert notifier is not None
    notifier.send(READY=1, STATUS="ünïcode ok")
    assert received(sock) == ["READY=1\nSTATUS=ünïcode ok\n".encode()]


def test_socket_gone_is_logged_not_raised(
    path_socket: tuple[socket.socket, str], eliot_messages: list[dict]
) -> None:
    sock, path = path_socket
    notifier = SDNotifier(path)
    assert notifier.ready()
    os.unlink(path)
    assert notifier.watchdog() is False
    [failure] = [m for m in eliot_messages if m.get("message_type") == "openclaw:systemd:notify-failed"]
    assert failure["log_level"] == "warn"
    assert failure["keys"] == ["WATCHDOG"]


def test_close_then_send_reopens(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SDNotifier(path)
    notifier.ready()
    notifier.close()
    notifier.watchdog()
    assert received(sock) == [b"READY=1\n", b"WATCHDOG=1\n"]


@pytest.mark.parametrize("key", ["", "ready", "A=B", "A\nB", "1X", "É"])
def test_bad_keys_refused(key: str) -> None:
    with pytest.raises(ValueError):
        format_message({key: "1"})


@given(st.text())
def test_values_never_add_lines(value: str) -> None:
    assert format_message({"STATUS": value}).count(b"\n") == 1


@given(st.integers(min_value=1, max_value=2**64 - 1), st.integers(min_value=1, max_value=2**22))
def test_interval_is_half_the_usec(usec: int, pid: int) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": str(usec)}, pid=pid) == usec / 2_000_000
    assert watchdog_interval({"WATCHDOG_USEC": str(usec), "WATCHDOG_PID": str(pid)}, pid=pid) == usec / 2_000_000


@given(st.integers(min_value=1, max_value=2**64 - 1), st.integers(min_value=1), st.integers(min_value=1))
def test_interval_for_another_pid_is_none(usec: int, ours: int, theirs: int) -> None:
    environ = {"WATCHDOG_USEC": str(usec), "WATCHDOG_PID": str(theirs)}
    expected = None if ours != theirs else usec / 2_000_000
    assert watchdog_interval(environ, pid=ours) == expected


def test_interval_defaults_to_our_pid() -> None:
    environ = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(environ) == 2.0


def test_no_watchdog_asked_for() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": ""}) is None


@given(st.text().filter(lambda t: t != "" and not (t.isascii() and t.isdigit() and int(t) > 0)))
def test_bad_usec_is_none(text: str) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": text}, pid=1) is None


@pytest.mark.parametrize("pid_text", ["x", "-1", "1.0", " 1"])
def test_bad_pid_is_none_and_warned(pid_text: str, eliot_messages: list[dict]) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": pid_text}, pid=1) is None
    warnings = [m for m in eliot_messages if m.get("message_type") == "openclaw:systemd:bad-watchdog-env"]
    assert [(m["name"], m["log_level"]) for m in warnings] == [("WATCHDOG_PID", "warn")]
