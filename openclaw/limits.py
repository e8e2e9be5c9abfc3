"""
The bounds both listeners share, without I/O: connection caps (in total and
per address), a per-connection request rate, and the fixed HTTP response a
refused connection gets before it is closed.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.protocol import Protocol

TOO_MANY_CONNECTIONS = "too_many_connections"
TOO_MANY_PER_ADDRESS = "too_many_per_address"


class ConnectionCaps:
    """Counts open connections; ``admit`` says why a new one is refused, if it is."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        """Count a connection from ``address`` in, or return the refusal reason."""
        if self.open >= self.total:
            return TOO_MANY_CONNECTIONS
        here = self._by_address.get(address, 0)
        if here >= self.per_address:
            return TOO_MANY_PER_ADDRESS
        self.open += 1
        self._by_address[address] = here + 1
        return None

    def release(self, address: str) -> None:
        """A connection ``admit`` let in has closed."""
        self.open -= 1
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]


class TokenBucket:
    """
    ``rate`` requests a second on average, ``burst`` at once; ``take(now)``
    spends one token if there is one.  Time is passed in, so tests need no clock.
    """

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True


def http_response(code: int, reason: str, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP/1.1 response with a JSON body that closes the connection (no Server banner)."""
    data = orjson.dumps(body)
    head = [f"HTTP/1.1 {code} {reason}", "Content-Type: application/json", f"Content-Length: {len(data)}",
            "Connection: close", "Cache-Control: no-store", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


class Refusal(Protocol):
    """Writes one prepared response and closes: what an over-the-cap connection gets."""

    def __init__(self, response: bytes) -> None:
        self.response = response

    def connectionMade(self) -> None:
        self.transport.write(self.response)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Whatever the client sent is ignored: it is being closed."""


def refusal(reason: str) -> Refusal:
    """The 503 a connection over a cap gets, naming which cap."""
    message = {
        TOO_MANY_CONNECTIONS: "the server has too many open connections; retry later",
        TOO_MANY_PER_ADDRESS: "too many open connections from your address; close some and retry",
    }[reason]
    return Refusal(http_response(503, "Service Unavailable", {"error": {"code": reason, "message": message}},
                                 (("Retry-After", "5"),)))
