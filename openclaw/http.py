"""
The one HTTP client of the chat connectors and the model brains: timeouts,
JSON via orjson, a cap on the body read, ``Retry-After``/429 waits, and the
right behaviour against servers that close connections between requests.

That last part: Twisted's ``HTTPConnectionPool`` keeps a connection after an
HTTP/1.0 response too, and retries on its own only a GET or HEAD that fails
on a cached connection the server has closed meanwhile.  A POST there fails
at once with ``ResponseNeverReceived``.  Here a request that failed on a
*reused* pooled connection before any response byte arrived is sent once
more on a fresh connection when it is idempotent (the caller says so: a
long poll with an offset is); the caller never sees that failure, so a
connector does not count it as a lost connection.  Platform modules keep
only their specifics (URLs, auth headers, how their errors read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, inlineCallbacks, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseNeverReceived,
    _HTTP11ClientFactory,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from openclaw import metrics
from openclaw.backoff import retry_after
from openclaw.eliotutil import log, message_type, typed

CLIENT = typed("client", [str], "which client: the connector or provider it serves")
METHOD = typed("method", [str], "the HTTP method")
HTTP_RATE_LIMITED = message_type("openclaw:http:rate-limited", [
    CLIENT, METHOD, typed("delay", [int, float], "seconds waited, as Retry-After asked"),
    typed("attempt", [int], "rate-limited answers so far"),
], "a 429: waiting before the request is sent again", "warn")
HTTP_FRESH_RETRY = message_type("openclaw:http:fresh-retry", [
    CLIENT, METHOD, typed("reason", [str], "how the reused connection failed"),
], "an idempotent request resent on a fresh connection: a reused one failed before any answer byte", "debug")

MAX_BODY = 8 * 1024 * 1024
"""The largest response body read by default; a larger one fails the request (``BodyTooLarge``)."""

NOT_ANSWERED = (ResponseNeverReceived, RequestNotSent, RequestTransmissionFailed)
"""Failures that mean no byte of a response arrived."""


class HTTPTimeout(TimeoutError):
    """No complete answer within the request's timeout."""


class BodyTooLarge(Exception):
    """The response body is larger than the request's ``max_body``."""


@dataclass(frozen=True)
class Response:
    """A complete answer: status, lower-case headers (last value of each), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False

    def json(self) -> Any:
        """The body as JSON (orjson: nesting over 1,024 is an error too). :raise ValueError: if it is not."""
        return orjson.loads(self.body)

    @property
    def retry_after(self) -> float | None:
        """Seconds the ``Retry-After`` header asks for (``None``: absent, or a date)."""
        return retry_after(self.headers.get("retry-after"))


@dataclass(frozen=True)
class RateLimit:
    """
    How to wait out a 429: up to ``retries`` times, for what ``wait_of`` reads
    from the answer (default: ``Retry-After``; else ``default``), unless that
    is longer than ``max_wait``.  A 429 not waited out is returned as it is.
    """

    retries: int
    max_wait: float
    default: float | None = None
    wait_of: Callable[[Response], float | None] = lambda response: response.retry_after

    def wait(self, response: Response, attempt: int) -> float | None:
        """The pause before sending again, or ``None`` to give the 429 to the caller."""
        if response.status != 429 or attempt >= self.retries:
            return None
        wait = self.wait_of(response)
        wait = self.default if wait is None else wait
        return wait if wait is not None and wait <= self.max_wait else None


@implementer(IBodyProducer)
class _Bytes:
    """A request body already in memory (written at once; no cooperator)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Body(Protocol):
    """
    Collects a body, at most ``limit`` bytes (past it: the first ``limit``
    when ``truncate``, else ``BodyTooLarge``), into ``done``.  Unlike treq's
    ``content``, cancelling ``done`` drops the connection, so a server
    stalling mid-body is left too.
    """

    def __init__(self, limit: int, truncate: bool) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.truncate = truncate
        self.over = False
        self.done: Deferred = Deferred(lambda _: self.transport.stopProducing())

    def dataReceived(self, data: bytes) -> None:
        if self.over:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.over = True
            self.chunks.append(data[: len(data) - (self.size - self.limit)])
            self.transport.stopProducing()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self.done.called:
            return
        if self.over:
            if self.truncate:
                self.done.callback(b"".join(self.chunks))
            else:
                self.done.errback(BodyTooLarge(f"response body over {self.limit} bytes"))
        elif reason is None or reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class _QuietFactory(_HTTP11ClientFactory):
    """Twisted logs "Starting/Stopping factory" for every connection; a client's connection is no news."""

    noisy = False


class QuietPool(HTTPConnectionPool):
    """A connection pool whose connections do not log their factory's start and stop."""

    _factory = _QuietFactory


class _Pool(QuietPool):
    """A pool that tells whether the connection it last handed out was a cached one."""

    reused = False

    def getConnection(self, key: Any, endpoint: Any) -> Deferred:
        self.reused = True
        return super().getConnection(key, endpoint)

    def _newConnection(self, key: Any, endpoint: Any) -> Deferred:
        self.reused = False
        return super()._newConnection(key, endpoint)


def _cancelled(failure: Any) -> bool:
    """Whether a request failed unanswered because it was cancelled (a watchdog's, a timeout's)."""
    return any(r.check(CancelledError) for r in getattr(failure.value, "reasons", None) or [])


def _never_answered(failure: Any) -> bool:
    """Whether ``failure`` is a request that got no response byte, and not because it was cancelled."""
    return bool(failure.check(*NOT_ANSWERED)) and not _cancelled(failure)


def _cancelled_as_such(failure: Any) -> Any:
    """A request cancelled before its answer fails with ``ResponseNeverReceived``; it was a cancel."""
    if failure.check(*NOT_ANSWERED) and _cancelled(failure):
        raise CancelledError()
    return failure


class HTTPClient:
    """
    :param label: names the client in logs and the metric (``telegram``, a provider).
    :param persistent: keep connections open between requests (a pool).
    :param clock: for timeouts and 429 waits; ``sleep`` (default: on ``clock``)
        waits out a 429 (tests record the delays).
    :param endpoint_factory: where connections go (``Agent.usingEndpointFactory``);
        default: the URL's host, resolved by Twisted.
    """

    def __init__(
        self, reactor: Any, label: str, *, clock: Any = None, persistent: bool = True, timeout: float = 30.0,
        sleep: Callable[[float], Deferred] | None = None, endpoint_factory: Any = None,
    ) -> None:
        self.label = label
        self.clock = clock or reactor
        self.timeout = timeout
        self._sleep = sleep or (lambda delay: deferLater(self.clock, delay))
        self._pool = _Pool(reactor, persistent=persistent)

        def agent(pool: HTTPConnectionPool) -> Agent:
            if endpoint_factory is None:
                return Agent(reactor, pool=pool)
            return Agent.usingEndpointFactory(reactor, endpoint_factory, pool=pool)

        self._agent = agent(self._pool)
        # Where a request goes again after a reused connection failed it.
        self._fresh = agent(QuietPool(reactor, persistent=False))
        self._retried = metrics.http_fresh_retries.labels(label)

    @inlineCallbacks
    def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, json: Any = None,
        data: bytes | None = None, timeout: float | None = None, idempotent: bool | None = None,
        rate_limit: RateLimit | None = None, max_body: int = MAX_BODY, truncate: bool = False,
    ) -> Any:
        """
        Fire with a ``Response`` (any status; 429s waited out per
        ``rate_limit``) or fail: ``HTTPTimeout`` after ``timeout`` seconds
        for an attempt, ``CancelledError`` when cancelled, ``BodyTooLarge``,
        or the transport's failure.  ``idempotent`` (default: GET, HEAD, PUT,
        DELETE, OPTIONS) allows the one resend on a fresh connection.
        """
        if json is not None:
            data = orjson.dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS") if idempotent is None else idempotent
        attempt = 0
        while True:
            response = yield self._exchange(method, url, headers or {}, data, timeout or self.timeout, idempotent,
                                            max_body, truncate)
            wait = rate_limit.wait(response, attempt) if rate_limit is not None else None
            if wait is None:
                return response
            log(HTTP_RATE_LIMITED, level="warn", client=self.label, method=method,
                delay=round(wait, 2), attempt=attempt)
            attempt += 1
            yield self._sleep(wait)

    def _exchange(self, method: str, url: str, headers: Mapping[str, str], data: bytes | None, timeout: float,
                  idempotent: bool, max_body: int, truncate: bool) -> Deferred:
        """One request (resent once on a fresh connection if allowed) and its body, within ``timeout``."""
        raw = Headers({k: [v] for k, v in headers.items()})
        send = lambda agent: agent.request(  # noqa: E731
            method.encode("ascii"), url.encode("utf-8"), raw, _Bytes(data) if data is not None else None)
        d = send(self._agent)
        reused = self._pool.reused

        def again(failure: Any) -> Any:
            if not (reused and idempotent and _never_answered(failure)):
                return failure
            self._retried.inc()
            log(HTTP_FRESH_RETRY, level="debug", client=self.label, method=method,
                reason=type(failure.value).__name__)
            return send(self._fresh)

        d.addErrback(again)
        d.addCallbacks(lambda response: self._read(response, max_body, truncate), _cancelled_as_such)
        return d.addTimeout(timeout, self.clock, onTimeoutCancel=_timed_out)

    @staticmethod
    def _read(response: Any, max_body: int, truncate: bool) -> Deferred:
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1") for k, v in response.headers.getAllRawHeaders()}
        body = _Body(max_body, truncate)
        response.deliverBody(body)
        return body.done.addCallback(lambda data: Response(response.code, headers, data, truncated=body.over))

    def close(self) -> Deferred:
        """Close the pooled connections (at stop)."""
        return self._pool.closeCachedConnections()


def _timed_out(result: Any, timeout: float) -> None:
    """Whatever cancelling left (``ResponseNeverReceived``, ``CancelledError``), it was a timeout."""
    raise HTTPTimeout(f"no answer within {timeout:g}s")
