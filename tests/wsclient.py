"""
A small Autobahn WebSocket client for tests: connect to a real gateway on
127.0.0.1, send frames, await replies and the close code.
"""

from __future__ import annotations

from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.messages.put(orjson.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"closed before open: {code} {reason}"))
        self.factory.closed.callback(code)
        self.factory.messages.put(_Closed(code))


class _Closed:
    """Queued when the connection closes, so a waiting ``next()`` fails fast."""

    def __init__(self, code: int | None) -> None:
        self.code = code


def _not_closed(message: Any) -> Any:
    if isinstance(message, _Closed):
        raise ConnectionError(f"connection closed ({message.code}) while waiting for a message")
    return message


class Client:
    """One test connection: ``send``/``request``/``next`` and ``closed``."""

    def __init__(self, protocol: _Protocol, factory: Any) -> None:
        self.protocol = protocol
        self.messages: defer.DeferredQueue = factory.messages
        self.closed: defer.Deferred = factory.closed
        self._ids = 0

    def send_raw(self, data: bytes | str, binary: bool = False) -> None:
        self.protocol.sendMessage(data.encode() if isinstance(data, str) else data, isBinary=binary)

    def send(self, method: str, params: Any = None, request_id: str | None = None) -> str:
        self._ids += 1
        request_id = request_id or f"r{self._ids}"
        frame: dict[str, Any] = {"type": "req", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = params
        self.send_raw(orjson.dumps(frame))
        return request_id

    def next(self) -> defer.Deferred:
        return self.messages.get().addCallback(_not_closed)

    @defer.inlineCallbacks
    def request(self, method: str, params: Any = None) -> Any:
        self.send(method, params)
        reply = yield self.next()
        return reply

    def close(self) -> defer.Deferred:
        self.protocol.sendClose(1000)
        return self.closed


@defer.inlineCallbacks
def connect(port: int, token: str | None = None, max_size: int = 16 * 1024 * 1024,
            origin: str | None = None) -> Any:
    """Open a connection (as a browser page of ``origin``, if given); with ``token``, also send ``connect``."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/", origin=origin)
    factory.protocol = _Protocol
    factory.setProtocolOptions(maxMessagePayloadSize=max_size, maxFramePayloadSize=max_size)
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    factory.messages = defer.DeferredQueue()
    yield TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    protocol = yield factory.opened
    client = Client(protocol, factory)
    if token is not None:
        reply = yield client.request("connect", {"token": token, "client": "test"})
        assert reply["ok"], reply
    return client
