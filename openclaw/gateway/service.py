"""
The gateway service: authenticates connections, dispatches requests, tracks
what is in flight, and drains.

Draining stops listening at once, answers new requests ``shutting_down``,
waits for in-flight requests (until they finish or the root, its budget
``daemon.drain_timeout`` spent, calls ``hurry()``), then closes every
connection with 1001.  It drains last, so replies the pipeline finishes
while draining still reach webchat clients.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from openclaw import __version__, metrics
from openclaw.config import Config, GatewayConfig
from openclaw.eliotutil import action_type, begin, enabled, log, message_type, typed
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError
from openclaw.gateway.protocol import GatewayProtocol, make_factory
from openclaw.gateway.token import load_or_create_token, token_matches
from openclaw.interfaces import IAdmission, IDrainable, IReconfigurable, IStatusSource
from openclaw.listening import ListeningService
from openclaw.runtime import Runtime
from openclaw.status import StatusSource


GATEWAY_DRAIN = action_type("openclaw:gateway:drain", [
    typed("inflight", [int], "requests still running"), typed("connections", [int], "open connections"),
], [], "the gateway waiting for in-flight requests at shutdown (until the daemon hurries it), then closing connections")
GATEWAY_DRAIN_ABANDONED = message_type("openclaw:gateway:drain-abandoned", [
    typed("count", [int], "requests abandoned"), typed("requests", [dict], "their ids by peer"),
], "the drain bound passed or the operator hurried: requests left unanswered", "warn")
GATEWAY_SEND_QUEUE_FULL = message_type("openclaw:gateway:send-queue-full", [
    typed("peer", [str], "the client"), typed("session_id", [str, None], "its session, once connected"),
    typed("limit", [int], "gateway.send_hard_limit"),
], "a client that does not read its replies closed with 1008", "warn")

AUTH_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_GOING_AWAY = 1008, 1009, 1001
MAX_CLIENT_LENGTH = 64


@implementer(IAdmission, IDrainable, IReconfigurable, IStatusSource)
class GatewayService(StatusSource, ListeningService):
    """
    The WebSocket gateway; ``methods`` is the final table of method names
    to handlers (each counted under its own name in
    ``openclaw_requests_total``); ``on_close(conn)`` hears each closed
    connection (webchat forgets its subscriptions); ``console_origins()``
    are the web console's origins, allowed like ``gateway.allowed_origins``.
    """

    def __init__(
        self,
        reactor: Any,
        runtime: Runtime,
        config: GatewayConfig,
        token_path: str,
        methods: Mapping[str, Callable[[Any, dict], Any]],
        on_close: Callable[[GatewayProtocol], None] = lambda conn: None,
        console_origins: Callable[[], set[str]] = set,
    ) -> None:
        super().__init__(reactor, config.listen, make_factory(self, config), "gateway.listen", config.backlog)
        self.factory.console_origins = console_origins
        self.runtime = runtime
        self.clock = runtime.clock
        self.config = config
        self.token_path = token_path
        self.token = ""
        self.methods = dict(methods)
        self.connections: set[GatewayProtocol] = set()
        self._on_close = on_close
        self.inflight = 0
        self.draining = False
        self._idle: Deferred | None = None
        self._closed: Deferred | None = None
        self._drained: Deferred | None = None
        self._stopped_listening: Deferred = succeed(None)
        self._hurried = False
        self.request_metrics = metrics.RequestMetrics("gateway", ["connect", "invalid", *methods])
        metrics.gateway_connections.set_function(lambda: len(self.connections))
        metrics.gateway_inflight.set_function(lambda: self.inflight)

    status_key = "gateway"

    def status(self) -> dict[str, int]:
        return {"connections": len(self.connections), "inflight": self.inflight}

    def privilegedStartService(self) -> None:
        self.token = load_or_create_token(self.token_path, self.config.token)
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.token:
            self.token = load_or_create_token(self.token_path, self.config.token)
        super().startService()

    # Connections

    def opened(self, conn: GatewayProtocol) -> None:
        if self.draining:
            conn.close(CLOSE_GOING_AWAY, "shutting down")
            return
        self.connections.add(conn)
        conn.auth_timer = self.clock.callLater(AUTH_TIMEOUT, self._auth_timeout, conn)
        log("openclaw:gateway:open", peer=conn.peer_address, connections=len(self.connections))

    def closed(self, conn: GatewayProtocol, code: int | None) -> None:
        if conn.auth_timer is not None and conn.auth_timer.active():
            conn.auth_timer.cancel()
        self.connections.discard(conn)
        self._on_close(conn)
        log(
            "openclaw:gateway:close", peer=conn.peer_address, code=code,
            session_id=conn.session_id, abandoned=len(conn.inflight),
        )
        if self._closed is not None and not self.connections:
            self._closed, d = None, self._closed
            d.callback(None)

    def _auth_timeout(self, conn: GatewayProtocol) -> None:
        log("openclaw:gateway:auth-timeout", level="warn", peer=conn.peer_address)
        conn.close(CLOSE_POLICY, "connect required")

    # Requests

    def received(self, conn: GatewayProtocol, payload: bytes, is_binary: bool) -> None:
        """Handle one frame: always exactly one reply, or a close."""
        started = self.clock.seconds()
        if self.draining:
            self.request_metrics.count("invalid")
            conn.send(frames.encode_error(
                None if is_binary else frames.peek_id(payload), frames.SHUTTING_DOWN,
                "the daemon is shutting down; reconnect later",
            ))
            return
        if conn.bucket is not None and not conn.bucket.take(started):
            self._rate_limited(conn, payload, is_binary)
            return
        try:
            request = frames.parse_request(payload, is_binary, self.config.max_frame_bytes)
        except FrameError as e:
            self._refuse(conn, e)
            return
        self.request_metrics.count(request.method)
        if enabled("trace"):
            log("openclaw:gateway:request", level="trace", peer=conn.peer_address,
                method=request.method, id=request.id, length=len(payload))
        if request.method == "connect":
            if not token_matches(self.token, request.params.get("token")):
                self._unauthorized(conn, request.id, "wrong or missing token")
                return
        elif not conn.authenticated:
            self._unauthorized(conn, request.id, "send connect with a token first")
            return
        if request.id in conn.inflight:
            conn.send(frames.encode_error(request.id, frames.DUPLICATE_ID, "a request with this id is in flight"))
            return
        handler = self._connect if request.method == "connect" else self.methods.get(request.method)
        if handler is None:
            conn.send(frames.encode_error(
                request.id, frames.UNKNOWN_METHOD, f"unknown method {request.method!r}"[:200]))
            return
        conn.inflight.add(request.id)
        self.inflight += 1
        try:
            result = handler(conn, request.params)
        except Exception as e:
            self._failed(e, conn, request, started)
            return
        if isinstance(result, Deferred):
            result.addCallbacks(
                self._done, self._failed,
                callbackArgs=(conn, request, started), errbackArgs=(conn, request, started),
            )
        else:
            self._done(result, conn, request, started)

    def _done(self, payload: Any, conn: GatewayProtocol, request: frames.Request, started: float) -> None:
        self._finish(conn, request, started, frames.encode_response(request.id, payload))

    def _failed(self, reason: Any, conn: GatewayProtocol, request: frames.Request, started: float) -> None:
        error = getattr(reason, "value", reason)
        if isinstance(error, FrameError):
            data = frames.encode_error(request.id, error.code, error.message)
            if error.code == frames.BUSY:
                conn.hold_after_busy(self.clock)
        else:
            log("openclaw:gateway:method-failed", level="error", method=request.method, error=repr(error))
            data = frames.encode_error(request.id, frames.INTERNAL_ERROR, "the request failed; see the daemon's log")
        self._finish(conn, request, started, data)

    def _finish(self, conn: GatewayProtocol, request: frames.Request, started: float, data: bytes) -> None:
        conn.inflight.discard(request.id)
        self.inflight -= 1
        conn.send(data)
        self.request_metrics.duration.observe(self.clock.seconds() - started)
        if self.inflight == 0 and self._idle is not None:
            self._idle, d = None, self._idle
            d.callback(None)

    def _refuse(self, conn: GatewayProtocol, error: FrameError) -> None:
        self.request_metrics.count("invalid")
        metrics.gateway_frame_errors.labels(error.code).inc()
        conn.bad_frames += 1
        conn.send(frames.encode_error(error.request_id, error.code, error.message))
        if not conn.authenticated:
            self._unauthorized_close(conn)
        elif conn.bad_frames >= self.config.max_bad_frames:
            log("openclaw:gateway:too-many-bad-frames", level="warn", peer=conn.peer_address,
                bad_frames=conn.bad_frames, last_code=error.code)
            too_big = error.code == frames.FRAME_TOO_LARGE
            conn.close(CLOSE_TOO_BIG if too_big else CLOSE_POLICY, "too many malformed frames")

    def _unauthorized(self, conn: GatewayProtocol, request_id: str, message: str) -> None:
        metrics.gateway_auth_failures.inc()
        log("openclaw:gateway:unauthorized", level="warn", peer=conn.peer_address)
        conn.send(frames.encode_error(request_id, frames.UNAUTHORIZED, message))
        self._unauthorized_close(conn)

    def _unauthorized_close(self, conn: GatewayProtocol) -> None:
        """Before ``connect`` only ``connect`` is served: one error, then close, reading nothing more."""
        conn.close(CLOSE_POLICY, "unauthorized", stop_reading=True)

    def _rate_limited(self, conn: GatewayProtocol, payload: bytes, is_binary: bool) -> None:
        metrics.gateway_refused.labels("rate_limited").inc()
        conn.send(frames.encode_error(
            None if is_binary else frames.peek_id(payload), frames.RATE_LIMITED,
            f"more than {self.config.max_requests_per_second} requests per second "
            f"(burst {self.config.request_burst}); slow down",
        ))

    def overflowed(self, conn: GatewayProtocol) -> None:
        """The client queued more than ``send_hard_limit`` unread bytes: close it."""
        metrics.gateway_refused.labels("send_queue_full").inc()
        log(GATEWAY_SEND_QUEUE_FULL, level="warn", peer=conn.peer_address,
            session_id=conn.session_id, limit=self.config.send_hard_limit)
        conn.close(CLOSE_POLICY, "send queue full: the client does not read its replies", stop_reading=True)

    def _connect(self, conn: GatewayProtocol, params: dict) -> dict[str, Any]:
        client = params.get("client")
        if not (isinstance(client, str) and 0 < len(client) <= MAX_CLIENT_LENGTH):
            client = uuid.uuid4().hex[:12]
        if conn.auth_timer is not None and conn.auth_timer.active():
            conn.auth_timer.cancel()
        conn.authenticated = True
        conn.session_id = f"webchat:{client}"
        self.runtime.sessions.touch(conn.session_id, "webchat", self.clock.seconds(), conn.peer_address)
        log("openclaw:gateway:connected", peer=conn.peer_address, session_id=conn.session_id)
        return {
            "server": "openclaw",
            "version": __version__,
            "session": conn.session_id,
            "methods": sorted(["connect", *self.methods]),
            "max_frame_bytes": self.config.max_frame_bytes,
        }

    # Drain

    def refuse_new(self) -> None:
        """Stop listening now; requests on open connections get ``shutting_down``."""
        if not self.draining:
            self.draining = True
            self._stopped_listening = self.stop_listening()

    def drain(self) -> Deferred:
        if self._drained is not None:
            return self._drained
        self.refuse_new()
        self._drained = self._drain()
        return self._drained

    def _drain(self) -> Deferred:
        action = begin(GATEWAY_DRAIN, inflight=self.inflight, connections=len(self.connections))
        with action.context():
            d = self._stopped_listening
            if self.inflight and not self._hurried:
                self._idle = Deferred()
                d.addCallback(lambda _: self._idle)
            d.addCallback(lambda _: self._close_all())
        d.addBoth(lambda result: (action.finish(), result)[1])
        return d

    def _give_up(self) -> None:
        """The drain budget is spent (or the operator hurried): abandon what is left."""
        if self._idle is None:
            return
        abandoned = {c.peer_address: sorted(c.inflight) for c in self.connections if c.inflight}
        log(GATEWAY_DRAIN_ABANDONED, level="warn", count=self.inflight, requests=abandoned)
        metrics.drain_abandoned.inc(self.inflight)
        self._idle, d = None, self._idle
        d.callback(None)

    def hurry(self) -> None:
        """Stop waiting now, or, if the drain has not begun, do not wait when it does."""
        self._hurried = True
        self._give_up()

    def _close_all(self) -> Deferred:
        if not self.connections:
            return succeed(None)
        self._closed = Deferred()
        for conn in list(self.connections):
            conn.close(CLOSE_GOING_AWAY, "shutting down")
        timer = self.clock.callLater(CLOSE_TIMEOUT, self._abort_all)
        self._closed.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return self._closed

    def _abort_all(self) -> None:
        for conn in list(self.connections):
            conn.transport.abortConnection()

    def reconfigure(self, config: Config) -> None:
        """Limits and the token apply to the next frame and connection; open connections stay."""
        if config.gateway == self.config:
            return
        self.config = config.gateway
        self.factory.reconfigure(config.gateway)
        self.token = load_or_create_token(self.token_path, config.gateway.token)

    def stopService(self) -> Deferred:
        d = self.drain()
        d.addCallback(lambda _: super(GatewayService, self).stopService())
        return d

