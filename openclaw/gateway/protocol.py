"""
The Autobahn protocol of one gateway connection.  It only moves frames: every
decision is made by the gateway service it hands them to.

Backpressure is Twisted's producer/consumer: each connection registers itself
as the streaming producer of its own transport, so when replies queue past
``gateway.send_high_water`` the transport calls ``pauseProducing`` and the
connection stops reading requests until the queue has drained.  Replies still
produced while paused (answers to requests already read, pushed events) are
counted; past ``gateway.send_hard_limit`` the client is closed with 1008.
A connection told ``busy`` more than ``BUSY_RATE`` times a second (after
``BUSY_BURST`` at once) is not read for ``BUSY_HOLD`` seconds either: a
client that resends at once would otherwise spend the daemon's CPU on
refusals and starve the answers it is waiting for (its frames wait in the
kernel's socket buffers, not in our memory), while one that meets an
occasional refusal near capacity keeps being read.
"""

from __future__ import annotations

from typing import Any

from openclaw.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from openclaw import metrics
from openclaw.config import GatewayConfig
from openclaw.limits import ConnectionCaps, TokenBucket, refusal

#: Refusals as ``busy`` a connection gets at full speed: a burst, then a rate per second;
#: past them it is not read for ``BUSY_HOLD`` seconds.
BUSY_BURST, BUSY_RATE, BUSY_HOLD = 50, 100.0, 0.1

#: Request line and headers of the opening handshake, at most (Twisted's web server allows 16 KiB too).
MAX_HANDSHAKE_BYTES = 16 * 1024


def text_frame(payload: bytes) -> bytes:
    """
    One unfragmented, unmasked WebSocket text frame (RFC 6455 5.2), as a
    server sends it: FIN and opcode 1, then the 7-bit, 16-bit or 64-bit length.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


@implementer(IPushProducer)
class GatewayProtocol(WebSocketServerProtocol):
    """One client connection, with its auth, in-flight and backpressure state."""

    address = ""
    paused = False
    reading_stopped = False
    #: The pending call that reads again after too many ``busy`` (``hold_after_busy``).
    busy_hold: Any = None
    busy_bucket: TokenBucket | None = None
    #: Bytes this connection may still queue while paused before it is closed.
    paused_budget = 0
    bucket: TokenBucket | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Autobahn sets TCP_NODELAY from the protocol's default before it
        # copies the factory's ``tcpNoDelay`` in, so it stays off: an ack
        # and its reply, two small writes, then wait out the client's
        # delayed ACK (40 ms) under Nagle.
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):  # a UNIX socket has no Nagle to turn off
            pass
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = self.factory.config.send_high_water
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.factory.caps.release(self.address)
        if self.busy_hold is not None and self.busy_hold.active():
            self.busy_hold.cancel()

    def dataReceived(self, data: bytes) -> None:
        # Autobahn buffers the handshake until it sees its end: bound it.
        if self.state == self.STATE_CONNECTING and len(self.data) + len(data) > MAX_HANDSHAKE_BYTES:
            self.failHandshake("request header too large", 431)
            return
        # What Autobahn's own dataReceived does, less the debug line it
        # formats on every read whether debug is on or not.
        self._dataReceived(data)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """Autobahn's refusal (426 for plain HTTP, 403 for a foreign origin, ...), counted."""
        metrics.gateway_refused.labels("origin" if code == 403 else "handshake").inc()
        if code == 426:
            responseHeaders = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Content-Length", "0")]
            reason = "Upgrade Required"
        super().failHandshake(reason, code, responseHeaders)

    def onConnect(self, request: Any) -> None:
        origin = request.origin  # "" without an Origin header: not a browser
        if origin and not self.factory.origin_allowed(origin):
            raise ConnectionDeny(403, "origin not allowed (gateway.allowed_origins)")
        self.peer_address = request.peer
        self.authenticated = False
        self.session_id: str | None = None
        self.inflight: set[str] = set()
        self.bad_frames = 0
        self.auth_timer: Any = None
        config = self.factory.config
        if config.max_requests_per_second:
            self.bucket = TokenBucket(config.max_requests_per_second, config.request_burst,
                                      self.factory.gateway.clock.seconds())

    def onOpen(self) -> None:
        self.factory.gateway.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Frames that arrive after a close was sent are not answered: not even parsed.
        if self.state == self.STATE_OPEN:
            self.factory.gateway.received(self, payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn calls onClose also for connections that never opened.
        if hasattr(self, "inflight"):
            self.factory.gateway.closed(self, code)

    # IPushProducer: the transport says when its send buffer passes the high-water mark.

    def pauseProducing(self) -> None:
        # The transport asks again on every write while its buffer is full.
        if not self.paused:
            self.paused = True
            config = self.factory.config
            self.paused_budget = max(0, config.send_hard_limit - config.send_high_water)
            metrics.gateway_send_paused.inc()
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self._read_again()

    def hold_after_busy(self, clock: Any) -> None:
        """One more refusal: past the connection's busy rate, stop reading for ``BUSY_HOLD`` s (not extended)."""
        now = clock.seconds()
        if self.busy_bucket is None:
            self.busy_bucket = TokenBucket(BUSY_RATE, BUSY_BURST, now)
        if self.busy_bucket.take(now) or self.busy_hold is not None:
            return
        metrics.gateway_busy_holds.inc()
        self.transport.pauseProducing()
        self.busy_hold = clock.callLater(BUSY_HOLD, self._busy_hold_over)

    def _busy_hold_over(self) -> None:
        self.busy_hold = None
        self._read_again()

    def _read_again(self) -> None:
        if not (self.paused or self.reading_stopped or self.busy_hold is not None):
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """The transport is going away; nothing to stop."""

    def send(self, data: bytes) -> None:
        """Send a text frame if the connection is still open and within its send bound."""
        if self.state == self.STATE_OPEN:
            if self.paused:
                self.paused_budget -= len(data)
                if self.paused_budget < 0:
                    self.factory.gateway.overflowed(self)
                    return
            if self._perMessageCompress is None and not self.send_queue:
                # One write of a frame built here: Autobahn's sendMessage
                # takes four calls and formats a debug line for the same bytes.
                self.transport.write(text_frame(data))
            else:
                self.sendMessage(data, isBinary=False)

    def close(self, code: int, reason: str, stop_reading: bool = False) -> None:
        """
        Start the closing handshake with ``code``.  Autobahn's ``sendClose``
        only allows 1000 and 3000-4999 for applications; the gateway needs
        1001 (going away), 1008 (policy) and 1009 (too big) from RFC 6455.
        With ``stop_reading`` nothing more is read from the client: what it
        sends after a policy close is not worth parsing (Autobahn drops the
        connection when the closing handshake times out).
        """
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
            if stop_reading:
                self.reading_stopped = True
                self.transport.pauseProducing()


class GatewayFactory(WebSocketServerFactory):
    """Refuses connections over ``gateway.max_connections`` (in total, per address) with a 503."""

    protocol = GatewayProtocol

    def __init__(self, gateway: Any, config: GatewayConfig) -> None:
        super().__init__(server=None)  # no version banner in any response
        self.gateway = gateway
        self.caps = ConnectionCaps(config.max_connections, config.max_connections_per_address)
        self.reconfigure(config)

    def reconfigure(self, config: GatewayConfig) -> None:
        """New limits apply to the next connection (caps, rate) and the next send (queue bounds)."""
        self.config = config
        self.caps.total, self.caps.per_address = config.max_connections, config.max_connections_per_address

    def console_origins(self) -> set[str]:
        """The web console's own origins, allowed besides ``gateway.allowed_origins`` (the gateway sets them)."""
        return set()

    def origin_allowed(self, origin: str) -> bool:
        origin = origin.lower().rstrip("/")
        return origin in self.config.allowed_origins or origin in self.console_origins()

    def buildProtocol(self, addr: Any) -> Any:
        address = getattr(addr, "host", "")
        reason = self.caps.admit(address)
        if reason is not None:
            metrics.gateway_refused.labels(reason).inc()
            return refusal(reason)
        protocol = super().buildProtocol(addr)
        protocol.address = address
        return protocol


def make_factory(gateway: Any, config: GatewayConfig) -> GatewayFactory:
    """
    A factory whose protocols report to ``gateway``.  Autobahn's own limit is
    four times ours: frames between the two get a ``frame_too_large`` reply,
    frames past it are cut off with 1009 before they fill memory.
    """
    factory = GatewayFactory(gateway, config)
    max_frame_bytes = config.max_frame_bytes
    hard_limit = max(4 * max_frame_bytes, max_frame_bytes + 65536)
    factory.setProtocolOptions(
        maxMessagePayloadSize=hard_limit,
        maxFramePayloadSize=hard_limit,
        openHandshakeTimeout=10,
        failByDrop=False,
        # Invalid UTF-8 gets an ``invalid_json`` reply from the parser
        # instead of Autobahn failing the whole connection with 1007.
        utf8validateIncoming=False,
        closeHandshakeTimeout=2,
        autoPingInterval=30,
        autoPingTimeout=15,
        # A plain HTTP request gets 426, not a status page naming the library.
        webStatus=False,
    )
    return factory
