"""
Hostile clients for the limit tests, on plain blocking sockets so they can
misbehave as no library would: never read, flood, trickle headers.  Every
loop is bounded in bytes and seconds and stops by itself.
"""

from __future__ import annotations

import socket
import time

import orjson
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from bench.gateway import _ws_frame as client_frame  # a masked client frame: (opcode, payload)

HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


def peak_rss(pid: int) -> int:
    """The process's peak resident set so far (Linux ``VmHWM``), in bytes."""
    return _status(pid, "VmHWM")


def rss(pid: int) -> int:
    return _status(pid, "VmRSS")


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def request_frame(method: str, request_id: str, params: dict | None = None) -> bytes:
    frame = {"type": "req", "id": request_id, "method": method}
    if params is not None:
        frame["params"] = params
    return client_frame(1, orjson.dumps(frame))


def read_until(sock: socket.socket, marker: bytes, limit: int = 65536) -> bytes:
    """Read until ``marker`` has been seen (or the peer closed)."""
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def ws_open(port: int, extra_headers: str = "", timeout: float = 10) -> tuple[socket.socket, bytes]:
    """Connect and send the opening handshake; return the socket and the server's response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(HANDSHAKE.format(extra=extra_headers).encode())
    return sock, read_until(sock, b"\r\n\r\n")


def read_server_frame(sock: socket.socket, buffered: bytes = b"") -> tuple[int, bytes, bytes]:
    """One unmasked server frame: (opcode, payload, bytes left over)."""
    data = buffered

    def need(n: int) -> None:
        nonlocal data
        while len(data) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a frame")
            data += chunk

    need(2)
    opcode, length = data[0] & 0x0F, data[1] & 0x7F
    start = 2
    if length == 126:
        need(4)
        length, start = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        need(10)
        length, start = int.from_bytes(data[2:10], "big"), 10
    need(start + length)
    return opcode, data[start:start + length], data[start + length:]


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The complete unmasked server frames in ``data``: (opcode, payload) each."""
    found, at = [], 0
    while at + 2 <= len(data):
        opcode, length, start = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, start = int.from_bytes(data[at + 2:at + 4], "big"), at + 4
        elif length == 127:
            length, start = int.from_bytes(data[at + 2:at + 10], "big"), at + 10
        if start + length > len(data):
            break
        found.append((opcode, data[start:start + length]))
        at = start + length
    return found


def flood(sock: socket.socket, data: bytes, seconds: float, stall: float = 2.0) -> int:
    """
    Send ``data`` without ever reading, for at most ``seconds``; stop early when
    the server has not taken a byte for ``stall`` seconds (it stopped reading)
    or closed.  Returns how many bytes were taken.
    """
    sock.settimeout(0.25)
    sent, end, stalled_since = 0, time.monotonic() + seconds, None
    view = memoryview(data)
    while sent < len(data) and time.monotonic() < end:
        try:
            n = sock.send(view[sent:sent + 262144])
        except socket.timeout:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since >= stall:
                break
            continue
        except OSError:
            break
        sent += n
        stalled_since = None
    return sent


def slow_headers(port: int, count: int, every: float, seconds: float) -> list[float | None]:
    """
    Open ``count`` connections that each send one header byte every ``every``
    seconds, for at most ``seconds``.  Returns, per connection, the seconds
    after opening at which the server closed it (None: still open at the end).
    """
    import select

    started = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for s in socks:
        s.setblocking(False)
    closed: dict[socket.socket, float] = {}
    header = b"GET /livez HTTP/1.1\r\nX-Slow: " + b"a" * 10_000
    position = 0
    next_byte = started
    try:
        while len(closed) < count and time.monotonic() - started < seconds:
            now = time.monotonic()
            if now >= next_byte:
                for s in socks:
                    if s not in closed:
                        try:
                            s.send(header[position:position + 1])
                        except OSError:
                            closed[s] = now - started
                position = min(position + 1, len(header) - 1)
                next_byte = now + every
            readable, _, _ = select.select([s for s in socks if s not in closed], [], [],
                                           max(0.0, min(0.2, next_byte - time.monotonic())))
            for s in readable:
                try:
                    if not s.recv(65536):
                        closed[s] = time.monotonic() - started
                except OSError:
                    closed[s] = time.monotonic() - started
    finally:
        for s in socks:
            s.close()
    return [closed.get(s) for s in socks]


def http_exchange(port: int, head: bytes, body_chunks: int = 0, chunk: bytes = b"",
                  seconds: float = 15) -> tuple[bytes, int]:
    """
    Send a request head, then up to ``body_chunks`` chunks of body while
    reading whatever the server answers; stop when it closed, or after
    ``seconds``.  Returns (response, body bytes the server took).
    """
    import select

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(head)
    sock.setblocking(False)
    response, sent, end = b"", 0, time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            sending = sent < body_chunks * len(chunk)
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 1.0)
            try:
                if readable:
                    data = sock.recv(65536)
                    if not data:
                        break
                    response += data
                if writable:
                    sent += sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                break
    finally:
        sock.close()
    return response, sent


class RawClient(protocol.Protocol):
    """
    An in-process raw TCP client: writes ``out`` on connecting, keeps every
    byte it gets, fires ``lost`` with them when the server closes.  With
    ``stall`` it stops reading after writing, until ``resumeProducing``.
    """

    def __init__(self, out: bytes, stall: bool = False) -> None:
        self.out = out
        self.stall = stall
        self.data = b""
        self.lost: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.out)
        if self.stall:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.lost.callback(self.data)


def raw_connect(port: int, out: bytes, stall: bool = False) -> defer.Deferred:
    """Connect a ``RawClient`` to 127.0.0.1:``port``; the Deferred fires with it once connected."""
    client = RawClient(out, stall)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return endpoint.connect(protocol.Factory.forProtocol(lambda: client))
