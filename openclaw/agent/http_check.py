"""
The ``http_check`` tool's fetch, made safe against the model that drives it.

A model can be talked into anything by what it reads, so the URL it asks
for is hostile input: it must not reach this machine, the local network or
a cloud metadata service (``169.254.169.254`` hands out credentials).  Each
hop's host is resolved here, every address it resolves to is checked
(``refusal``), and the connection goes to the checked address itself, so a
DNS answer that changes between check and connect (rebinding) gains
nothing.  Redirects are followed by hand, at most ``MAX_REDIRECTS``, each
hop checked again; at most ``MAX_BYTES`` of a body are read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union
from urllib.parse import urljoin, urlsplit

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolutionReceiver
from twisted.internet.ssl import optionsForClientTLS
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import log, message_type, typed
from openclaw.http import HTTPClient

HTTP_CHECK_REFUSED = message_type("openclaw:brain:http-check-refused", [
    typed("reason", [str], "why: an address class, redirects or a bad URL"), typed("detail", [str], "what was refused"),
    typed("redirects", [int], "redirects followed before the refusal"),
], "the http_check tool refused a URL a model asked for", "warn")

MAX_REDIRECTS = 5
MAX_BYTES = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: What no check may reach unless allowlisted, most specific first.
FORBIDDEN: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), kind) for net, kind in (
        ("169.254.169.254/32", "cloud metadata"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("0.0.0.0/8", "this host"),
        ("::/128", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("fc00::/7", "private (unique local)"),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)


class Refused(Exception):
    """The check may not go there; ``reason`` labels the metric (address, scheme, redirects)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Allowlist entries (``10.0.0.0/8``, ``192.168.1.5``, ``::1``) as networks. :raise ValueError: on a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def refusal(address: str, allow: Sequence[Network] = ()) -> str | None:
    """
    Why a check may not connect to ``address`` (``"loopback"``,
    ``"private"``, ...), or ``None``.  An IPv4 address written as IPv6
    (``::ffff:127.0.0.1``, ``64:ff9b::7f00:1``) is judged as the IPv4 one;
    the allowlist may name either form.
    """
    written: Address = ipaddress.ip_address(address.split("%", 1)[0])  # a zone (fe80::1%eth0) changes nothing
    ip = written
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    elif isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
        ip = ipaddress.IPv4Address(ip.packed[12:])
    if any(a in network for network in allow for a in {written, ip} if network.version == a.version):
        return None
    for network, kind in FORBIDDEN:
        if network.version == ip.version and ip in network:
            return kind
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects a name's addresses into ``done``."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.done: Deferred = Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.found.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.found)


def resolver(reactor: Any) -> Callable[[str], Deferred]:
    """``host`` -> a Deferred of all its addresses (IPv4 and IPv6), by the reactor's resolver."""

    def resolve(host: str) -> Deferred:
        receiver = _Addresses()
        reactor.nameResolver.resolveHostName(receiver, host)
        return receiver.done

    return resolve


class _Pinned:
    """An endpoint factory that connects to one checked address, whatever the URL's host resolves to now."""

    def __init__(self, reactor: Any, address: str, host: str, timeout: float) -> None:
        self.reactor, self.address, self.host, self.timeout = reactor, address, host, timeout

    def endpointForURI(self, uri: Any) -> Any:
        kind = TCP6ClientEndpoint if ":" in self.address else TCP4ClientEndpoint
        endpoint = kind(self.reactor, self.address, uri.port, timeout=self.timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(optionsForClientTLS(self.host), endpoint)
        return endpoint


@inlineCallbacks
def _address_for(url: str, resolve: Callable[[str], Deferred], allow: Sequence[Network]) -> Any:
    """The checked address to connect to for ``url``. :raise Refused: if the check may not go there."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused("scheme", "only http and https URLs can be checked")
    host = parts.hostname
    if not host:
        raise Refused("scheme", "the URL names no host")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = yield resolve(host)
    if not addresses:
        raise Refused("address", f"{host} does not resolve")
    for address in addresses:
        kind = refusal(address, allow)
        if kind is not None:
            shown = host if host == address else f"{host} ({address})"
            raise Refused("address", f"{shown} is a {kind} address, which http_check may not reach "
                                     "(brain.http_check_allow lists exceptions)")
    return addresses[0]


@inlineCallbacks
def check_url(
    reactor: Any, url: str, timeout: float, allow: Sequence[Network] = (),
    resolve: Callable[[str], Deferred] | None = None, max_redirects: int = MAX_REDIRECTS, max_bytes: int = MAX_BYTES,
) -> Any:
    """
    GET ``url`` and what it redirects to, within ``timeout`` in all.  Fires
    with ``{status, elapsed_ms, content_type, redirects, url, bytes_read,
    truncated}`` of the last answer, or ``"error: refused: ..."`` text.
    """
    resolve = resolve or resolver(reactor)
    started = reactor.seconds()
    redirects = 0
    try:
        while True:
            left = timeout - (reactor.seconds() - started)
            address = yield _address_for(url, resolve, allow).addTimeout(max(left, 0.001), reactor)
            left = max(timeout - (reactor.seconds() - started), 0.001)
            client = HTTPClient(reactor, "http_check", persistent=False, timeout=left,
                                endpoint_factory=_Pinned(reactor, address, urlsplit(url).hostname, left))
            response = yield client.request("GET", url, max_body=max_bytes, truncate=True)
            location = response.headers.get("location")
            if response.status not in REDIRECTS or not location:
                break
            redirects += 1
            if redirects > max_redirects:
                raise Refused("redirects", f"more than {max_redirects} redirects")
            url = urljoin(url, location)
    except Refused as e:
        metrics.http_check_refused.labels(e.reason).inc()
        log(HTTP_CHECK_REFUSED, level="warn", reason=e.reason, detail=str(e), redirects=redirects)
        return f"error: refused: {e}"
    return {
        "status": response.status,
        "elapsed_ms": round((reactor.seconds() - started) * 1000),
        "content_type": response.headers.get("content-type", ""),
        "redirects": redirects,
        "url": url,
        "bytes_read": len(response.body),
        "truncated": response.truncated,
    }
