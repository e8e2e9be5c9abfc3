"""
SystemdService on a Clock, talking to real AF_UNIX datagram sockets: the
exact order of READY, WATCHDOG, STATUS and STOPPING datagrams.
"""

import os
import socket
import uuid

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from openclaw.interfaces import IDrainable
from openclaw.system.sdnotify import SDNotifier
from openclaw.system.systemd_service import STATUS_INTERVAL, SystemdService
from tests.notify import received

READY = b"READY=1\nSTATUS=all good\n"
WATCHDOG = b"WATCHDOG=1\n"
STATUS = b"STATUS=all good\n"
STOPPING = b"STOPPING=1\nSTATUS=draining\n"
# WATCHDOG_USEC of 30 s: a ping every 15 s.
ENVIRON = {"WATCHDOG_USEC": "30000000"}






def make(notify_socket: str | None, environ: dict[str, str] = ENVIRON, status=lambda: "all good"):
    clock = Clock()
    notifier = SDNotifier.from_environ({"NOTIFY_SOCKET": notify_socket or ""})
    return SystemdService(notifier, clock, status, environ=environ), clock


def fired(d) -> list:
    results: list = []
    d.addBoth(results.append)
    return results


def test_provides_idrainable() -> None:
    service, _ = make(None)
    assert verifyObject(IDrainable, service)


def test_ready_then_watchdog_at_interval(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    service, clock = make(path)
    assert received(sock) == []
    service.startService()
    assert received(sock) == [READY, WATCHDOG]
    clock.advance(14.9)
    assert received(sock) == []
    clock.advance(0.1)
    assert received(sock) == [WATCHDOG]
    clock.advance(15)
    assert received(sock) == [WATCHDOG]


def test_status_refreshed_every_minute(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    texts = iter(["starting", "3 sessions", "4 sessions"])
    service, clock = make(path, environ={}, status=lambda: next(texts))
    service.startService()
    assert received(sock) == [b"READY=1\nSTATUS=starting\n"]
    clock.advance(STATUS_INTERVAL - 1)
    assert received(sock) == []
    clock.advance(1)
    assert received(sock) == [b"STATUS=3 sessions\n"]
    clock.advance(STATUS_INTERVAL)
    assert received(sock) == [b"STATUS=4 sessions\n"]


def test_drain_says_stopping_and_watchdog_continues(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    service, clock = make(path)
    service.startService()
    received(sock)
    assert fired(service.drain()) == [None]
    assert received(sock) == [STOPPING]
    # Draining twice says it once.
    assert fired(service.drain()) == [None]
    assert received(sock) == []
    # Four watchdog pings over a minute, no status refresh over "draining".
    clock.advance(15)
    clock.advance(15)
    clock.advance(15)
    clock.advance(15)
    assert received(sock) == [WATCHDOG] * 4


def test_stop_service_stops_loops(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    service, clock = make(path)
    service.startService()
    service.drain()
    service.stopService()
    assert not service.running
    assert clock.getDelayedCalls() == []
    received(sock)
    clock.advance(600)
    assert received(sock) == []


def test_restart_after_stop_sends_ready_again(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    service, clock = make(path, environ={})
    service.startService()
    service.drain()
    service.stopService()
    received(sock)
    service.startService()
    service.drain()
    assert received(sock) == [READY, STOPPING]


def test_abstract_namespace_socket() -> None:
    name = f"openclaw-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        service, clock = make("@" + name)
        service.startService()
        clock.advance(15)
        service.drain()
        assert received(sock) == [READY, WATCHDOG, WATCHDOG, STOPPING]
    finally:
        sock.close()


def test_watchdog_for_another_pid_not_sent(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    service, clock = make(path, environ={"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    service.startService()
    clock.advance(59)
    assert received(sock) == [READY]


def test_broken_status_text_neither_blocks_ready_nor_stops_refresh(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    calls = []

    def status() -> str:
        calls.append(None)
        if len(calls) < 3:
            raise RuntimeError("store closed")
        return "recovered"

    service, clock = make(path, environ={}, status=status)
    service.startService()
    clock.advance(STATUS_INTERVAL)
    clock.advance(STATUS_INTERVAL)
    assert received(sock) == [b"READY=1\n", b"STATUS=recovered\n"]


def test_without_notifier_everything_is_a_no_op() -> None:
    service, clock = make(None)
    service.startService()
    assert service.running
    assert clock.getDelayedCalls() == []
    assert fired(service.drain()) == [None]
    service.hurry()
    service.stopService()
    assert not service.running
