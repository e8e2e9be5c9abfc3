"""
The web port's bounds, as a Twisted ``HTTPChannel`` and ``Site`` that check
before they buffer: a body cap per route (413 as soon as a declared length is
over it, chunked bodies cut off at it), a deadline for each complete request
(headers and body), a cap on open connections, and a refusal of any
``Transfer-Encoding`` other than one ``chunked``.

Twisted's own parser refuses a second ``chunked`` and ``Content-Length`` next
to ``Transfer-Encoding``, but silently ignores ``identity`` (so a
``chunked`` + ``identity`` pair is processed): the guard in
``headerReceived`` sits in front of it for that.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.web.http import HTTPChannel
from twisted.web.server import Request, Site

from openclaw import metrics
from openclaw.config import WebConfig
from openclaw.eliotutil import log, message_type, typed
from openclaw.limits import ConnectionCaps, http_response, refusal

REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large"}

PEER = typed("peer", [str], "the client's address")
WEB_REFUSED = message_type("openclaw:web:refused", [
    typed("code", [int], "the HTTP status answered"), typed("reason", [str], "the limit: openclaw_web_refused_total's label"),
    PEER,
], "a request refused by a web limit and its connection closed", "debug")
WEB_IDLE_TIMEOUT = message_type("openclaw:web:idle-timeout", [PEER], "an idle HTTP connection closed", "debug")
WEB_ABORTED = message_type("openclaw:web:aborted", [PEER],
                           "a closed HTTP connection whose client would not take its last answer, aborted", "debug")


class LimitedRequest(Request):
    """A request that reports each body chunk to its channel before keeping it."""

    def handleContentChunk(self, data: bytes) -> None:
        if self.channel is not None and self.channel.body_received(len(data)):
            super().handleContentChunk(data)


class LimitedChannel(HTTPChannel):
    """One HTTP connection, refused with a JSON error the moment it passes a bound."""

    site: LimitedSite
    _deadline: Any = None
    _body_left = 0
    _refused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def connectionLost(self, reason: Any) -> None:
        self._disarm()
        super().connectionLost(reason)
        self.site.caps.release("")

    # The deadline: from the connection's start, or the previous response, to a complete request.

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.callLater(self.site.limits.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        self._refuse(408, "request_timeout", "the request was not complete within web.request_timeout")

    # Checks in front of Twisted's parser.

    def headerReceived(self, line: bytes) -> bool:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
            self._refuse(400, "bad_transfer_encoding", "only Transfer-Encoding: chunked is accepted")
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self) -> None:
        limit = self.site.body_limit(self.site.limits, self._command, self._path)
        if self.length is not None and self.length > limit:
            self._refuse(413, "body_too_large", f"the body may have at most {limit} bytes here")
            return
        self._body_left = limit
        super().allHeadersReceived()

    def body_received(self, size: int) -> bool:
        """Count ``size`` decoded body bytes; False once past the route's cap (then refused)."""
        if self._refused:
            return False
        self._body_left -= size
        if self._body_left < 0:
            self._refuse(413, "body_too_large", "the body is larger than this route accepts")
            return False
        return True

    def allContentReceived(self) -> None:
        if not self._refused:
            self._disarm()
            super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._arm()  # the next request on a kept-alive connection has the same deadline
        super().requestDone(request)

    def _refuse(self, code: int, kind: str, message: str) -> None:
        """Answer ``code`` and close without reading another byte."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        metrics.web_refused.labels(kind).inc()
        log(WEB_REFUSED, level="debug", code=code, reason=kind, peer=self._peer())
        self.transport.write(http_response(code, REASONS[code], {"error": {"code": kind, "message": message}}))
        self._close()
        self.dataReceived = self.lineReceived = self.rawDataReceived = lambda *args: None

    def _peer(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", ""))

    def _close(self) -> None:
        """Stop reading and close once the answer is out; abort a client that will not take it."""
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    # Twisted's idle timeout and its abort, logged at debug: an idle client is not news.

    def timeoutConnection(self) -> None:
        log(WEB_IDLE_TIMEOUT, level="debug", peer=self._peer())
        self._close()

    def forceAbortClient(self) -> None:
        log(WEB_ABORTED, level="debug", peer=self._peer())
        self._abortingCall = None
        self.transport.abortConnection()


class LimitedSite(Site):
    """
    A Site whose channels are ``LimitedChannel``s; ``body_limit(limits,
    method, path)`` is each route's cap in bytes.  Connections over ``web.max_connections``
    get a 503 before anything is read.
    """

    protocol = LimitedChannel
    requestFactory = LimitedRequest

    def __init__(
        self, resource: Any, limits: WebConfig, body_limit: Callable[[WebConfig, bytes, bytes], int],
        reactor: Any = None,
    ) -> None:
        super().__init__(resource, reactor=reactor)
        self.body_limit = body_limit
        self.caps = ConnectionCaps(limits.max_connections, limits.max_connections)
        self.reconfigure(limits)

    def reconfigure(self, limits: WebConfig) -> None:
        """Take new limits; open connections keep the deadline they were given."""
        self.limits = limits
        self.caps.total = self.caps.per_address = limits.max_connections

    def buildProtocol(self, addr: Any) -> Any:
        reason = self.caps.admit("")
        if reason is not None:
            metrics.web_refused.labels(reason).inc()
            return refusal(reason)
        return super().buildProtocol(addr)
