"""A datagram socket standing in for systemd's NOTIFY_SOCKET in tests."""

from __future__ import annotations

import socket


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock`` (delivery on AF_UNIX is synchronous)."""
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(4096))
        except BlockingIOError:
            return datagrams
