"""
The probes behind checks: one call looks at one thing once.

``make_probe(check, reactor)`` returns a callable giving a Deferred that
always fires with a ``ProbeResult`` (never fails): errors and the check's
``timeout`` become a failed result with a short human ``detail``, and a probe
slower than ``latency_max`` fails too, whatever its type.  Anything that may
block (statvfs on a hung mount, walking processes, reading a log) runs in the
reactor's thread pool.

Details name what was seen, never the target itself: a URL may carry a
password or token, and details reach logs and chat messages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable

import psutil
import treq
from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.names.error import DomainError
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    ResponseFailed,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from openclaw.config.proactive import CheckConfig
from openclaw.http import QuietPool

MAX_BODY = 1024 * 1024  # enough for body_match on any health page
MAX_LOG_READ = 4 * 1024 * 1024  # per look; a burst is read over several looks
MAX_LINE_SHOWN = 200


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency: float
    detail: str


Probe = Callable[[], Deferred]
# A raw probe: Deferred (or value) of (ok, detail); make_probe adds timing and errors.
Look = Callable[[], Any]


def make_probe(
    check: CheckConfig, reactor: Any, resolver: Any = None, tls_policy: Any = None,
) -> Probe:
    """
    :param resolver: a ``twisted.names`` resolver for ``dns`` checks (default:
        /etc/hosts, then the servers in /etc/resolv.conf).
    :param tls_policy: an ``IPolicyForHTTPS`` for ``https`` checks (default:
        the system's trust roots).
    """
    return timed(check, reactor, _look(check, reactor, resolver, tls_policy))


def _look(check: CheckConfig, reactor: Any, resolver: Any, tls_policy: Any) -> Look:
    if check.type == "http":
        return http_look(check, reactor, tls_policy or BrowserLikePolicyForHTTPS())
    if check.type == "tcp":
        return tcp_look(check.target, reactor)
    if check.type == "dns":
        return dns_look(check.target, resolver)
    if check.type == "logfile":
        return LogWatch(check.target, check.pattern, reactor)
    if check.type == "disk":
        return in_thread(reactor, partial(disk_verdict, check.target, check.min_free_percent))
    if check.type == "process":
        return in_thread(reactor, partial(process_verdict, check.target))
    verdicts = {"memory": memory_verdict, "load": load_verdict, "cpu": cpu_verdict}
    return partial(verdicts[check.type], check.max_percent)


def timed(check: CheckConfig, clock: Any, look: Look) -> Probe:
    """Wrap a raw probe: measure it, bound it by ``timeout``, apply ``latency_max``."""

    def probe() -> Deferred:
        started = clock.seconds()
        d = maybeDeferred(look)
        d.addTimeout(check.timeout, clock)

        def verdict(outcome: tuple[bool, str]) -> ProbeResult:
            ok, detail = outcome
            latency = clock.seconds() - started
            if ok and check.latency_max and latency > check.latency_max:
                return ProbeResult(False, latency, f"slow: {latency:.2f}s, more than {check.latency_max:g}s ({detail})")
            return ProbeResult(ok, latency, detail)

        def failed(failure: Failure) -> ProbeResult:
            return ProbeResult(False, clock.seconds() - started, describe(failure, check.timeout))

        return d.addCallbacks(verdict, failed)

    return probe


def describe(failure: Failure, timeout: float) -> str:
    """A short, human reason for a failed probe."""
    e = failure.value
    if isinstance(e, ResponseFailed) and e.reasons:
        return describe(e.reasons[0], timeout)
    if isinstance(e, (DeferredTimeout, CancelledError, error.TimeoutError)):
        return f"timed out after {timeout:g}s"
    if isinstance(e, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (error.DNSLookupError, DomainError)):
        return "name not found"
    if isinstance(e, error.ConnectionLost):
        return "connection lost"
    if isinstance(e, SSL.Error):
        reasons = [r[-1] for r in e.args[0] if isinstance(r, tuple)] if e.args and isinstance(e.args[0], list) else []
        return f"TLS failed: {', '.join(reasons) or e}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def in_thread(reactor: Any, fn: Callable[[], tuple[bool, str]]) -> Look:
    return lambda: deferToThreadPool(reactor, reactor.getThreadPool(), fn)


# Network


@implementer(IPolicyForHTTPS)
class _Recording:
    """
    An HTTPS policy that keeps the TLS connection it creates, so the probe
    can read the peer certificate through pyOpenSSL's public API (the
    response object does not expose its transport).
    """

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.connections: list[Any] = []

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return _RecordingCreator(self.policy.creatorForNetloc(hostname, port), self.connections)


@implementer(IOpenSSLClientConnectionCreator)
class _RecordingCreator:
    def __init__(self, creator: Any, connections: list[Any]) -> None:
        self.creator = creator
        self.connections = connections

    def clientConnectionForTLS(self, tls_protocol: Any) -> Any:
        connection = self.creator.clientConnectionForTLS(tls_protocol)
        self.connections.append(connection)
        return connection


def http_look(check: CheckConfig, reactor: Any, tls_policy: Any) -> Look:
    """GET without following redirects: 2xx/3xx (or ``expect_status``), ``body_match``, certificate age."""
    body_match = re.compile(check.body_match) if check.body_match else None

    @inlineCallbacks
    def look() -> Any:
        policy = _Recording(tls_policy)
        agent = Agent(reactor, contextFactory=policy, pool=QuietPool(reactor, persistent=False))
        response = yield treq.get(check.target, agent=agent, allow_redirects=False)
        body = bytearray()
        yield treq.collect(response, lambda data: body.extend(data[: MAX_BODY - len(body)]))
        status_ok = response.code == check.expect_status if check.expect_status else 200 <= response.code < 400
        if not status_ok:
            return False, f"HTTP {response.code}"
        if body_match and not body_match.search(body.decode("utf-8", "replace")):
            return False, f"HTTP {response.code}, body does not match {check.body_match!r}"
        if policy.connections and check.cert_days_min:
            days = certificate_days(policy.connections[0], reactor.seconds())
            if days is not None and days < check.cert_days_min:
                return False, f"HTTP {response.code}, TLS certificate expires in {days} days"
        return True, f"HTTP {response.code}"

    return look


def certificate_days(connection: Any, now: float) -> int | None:
    """Whole days until the peer certificate of a pyOpenSSL connection expires."""
    cert = connection.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return None
    left = cert.not_valid_after_utc - datetime.fromtimestamp(now, timezone.utc)
    return int(left.total_seconds() // 86400)


def tcp_look(target: str, reactor: Any) -> Look:
    """Connect to ``host:port`` and hang up."""
    host, port = target.rsplit(":", 1)

    def look() -> Deferred:
        factory = Factory.forProtocol(Protocol)
        factory.noisy = False  # one probe's connection is no news on the console
        d = HostnameEndpoint(reactor, host.strip("[]"), int(port)).connect(factory)
        d.addCallback(lambda protocol: protocol.transport.loseConnection())
        return d.addCallback(lambda _: (True, "connected"))

    return look


def dns_look(name: str, resolver: Any) -> Look:
    """Resolve ``name`` to an address."""
    state = {"resolver": resolver}

    def look() -> Deferred:
        if state["resolver"] is None:
            from twisted.names.client import createResolver

            state["resolver"] = createResolver()
        d = state["resolver"].getHostByName(name)
        return d.addCallback(lambda address: (True, f"resolves to {address}"))

    return look


# This host


def _limit(value: float, limit: float, what: str) -> tuple[bool, str]:
    return value <= limit, f"{what} {value:.1f}% (max {limit:g}%)"


def disk_verdict(mount: str, min_free_percent: float) -> tuple[bool, str]:
    usage = psutil.disk_usage(mount)
    free = 100.0 - usage.percent
    return free >= min_free_percent, f"{free:.1f}% free, {usage.free / 1e9:.1f} GB (min {min_free_percent:g}%)"


def memory_verdict(max_percent: float) -> tuple[bool, str]:
    return _limit(psutil.virtual_memory().percent, max_percent, "memory used")


def load_verdict(max_percent: float) -> tuple[bool, str]:
    """The 1-minute load average per CPU, as a percentage."""
    load, cpus = psutil.getloadavg()[0], psutil.cpu_count() or 1
    return _limit(load / cpus * 100, max_percent, f"load {load:.2f} on {cpus} CPUs,")


def cpu_verdict(max_percent: float) -> tuple[bool, str]:
    """CPU use since the previous call (the first call in a process reads 0)."""
    return _limit(psutil.cpu_percent(interval=None), max_percent, "cpu")


def process_verdict(name: str) -> tuple[bool, str]:
    """A process whose name (or program file name) is ``name`` is running."""
    count = 0
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = p.info["cmdline"] or [""]
        if name in (p.info["name"], os.path.basename(cmdline[0])):
            count += 1
    if not count:
        return False, "not running"
    return True, f"{count} running"


class LogWatch:
    """
    Lines matching ``pattern`` added to a log file since the last look.

    The first look only notes where the file ends (old lines are history, not
    news).  A changed inode or a file shorter than the offset means it was
    rotated or truncated: reading starts again from its beginning.  A line
    still being written (no newline yet) waits for the next look.
    """

    def __init__(self, path: str, pattern: str, reactor: Any) -> None:
        self.path = path
        self.pattern = re.compile(pattern)
        self.reactor = reactor
        self.inode: int | None = None
        self.offset: int | None = None

    def __call__(self) -> Deferred:
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.scan, self.inode, self.offset)
        return d.addCallback(self._seen)

    def _seen(self, scanned: tuple[int, int, list[str]]) -> tuple[bool, str]:
        self.inode, self.offset, matches = scanned
        if not matches:
            return True, "no new matching lines"
        first = matches[0][:MAX_LINE_SHOWN]
        return False, f"{len(matches)} new line{'s' if len(matches) > 1 else ''} matching: {first}"

    def scan(self, inode: int | None, offset: int | None) -> tuple[int, int, list[str]]:
        """``(inode, new offset, matching lines)``; runs in a thread, touches no attributes."""
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            if offset is None:
                return st.st_ino, st.st_size, []
            if st.st_ino != inode or st.st_size < offset:
                offset = 0
            f.seek(offset)
            data = f.read(MAX_LOG_READ)
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) == MAX_LOG_READ:
            end = len(data)  # one line longer than a read: take it in pieces
        lines = data[:end].decode("utf-8", "replace").splitlines()
        return st.st_ino, offset + end, [line for line in lines if self.pattern.search(line)]
