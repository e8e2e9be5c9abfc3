"""
The Autobahn protocol of one gateway connection.  It only moves frames: every
decision is made by the gateway service it hands them to.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol


class GatewayProtocol(WebSocketServerProtocol):
    """One client connection, with its auth and in-flight state."""

    def onConnect(self, request: Any) -> None:
        self.peer_address = request.peer
        self.authenticated = False
        self.session_id: str | None = None
        self.inflight: set[str] = set()
        self.bad_frames = 0
        self.auth_timer: Any = None

    def onOpen(self) -> None:
        self.factory.gateway.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.gateway.received(self, payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn calls onClose also for connections that never opened.
        if hasattr(self, "inflight"):
            self.factory.gateway.closed(self, code)

    def send(self, data: bytes) -> None:
        """Send a text frame if the connection is still open."""
        if self.state == self.STATE_OPEN:
            self.sendMessage(data, isBinary=False)

    def close(self, code: int, reason: str) -> None:
        """
        Start the closing handshake with ``code``.  Autobahn's ``sendClose``
        only allows 1000 and 3000-4999 for applications; the gateway needs
        1001 (going away), 1008 (policy) and 1009 (too big) from RFC 6455.
        """
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)


def make_factory(gateway: Any, max_frame_bytes: int) -> WebSocketServerFactory:
    """
    A factory whose protocols report to ``gateway``.  Autobahn's own limit is
    four times ours: frames between the two get a ``frame_too_large`` reply,
    frames past it are cut off with 1009 before they fill memory.
    """
    factory = WebSocketServerFactory()
    factory.protocol = GatewayProtocol
    factory.gateway = gateway
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
    )
    return factory
