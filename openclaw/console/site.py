"""
The console's HTTP side, mounted at ``/console/`` on the web listener: the
static files shipped in this package, ``config.json`` (where the gateway
is: no secrets) and ``POST session`` (a one-time link code for the token).

Every response carries a strict Content-Security-Policy: scripts and styles
from this origin only, no inline code, connections to this origin and the
gateway only, no framing by other pages.  No route changes state; the page
does everything over the gateway with the token, so there is no cookie to
forge a request with (CSRF has nothing to ride on).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson
from klein import Klein
from werkzeug.exceptions import MethodNotAllowed, NotFound

from openclaw.config import WebConfig
from openclaw.console.links import LinkCodes
from openclaw.eliotutil import log, message_type, typed
from openclaw.runfile import address_url

CONSOLE_CODE = message_type("openclaw:console:code", [
    typed("accepted", [bool], "a live code: the page got the token"), typed("peer", [str], "the browser's address"),
], "a one-time console link was used (refused: warn); the code itself is never logged")

#: The files served, by name under ``/console/``, and their types.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
#: The largest ``POST /console/session`` body (``{"code": "..."}``).
MAX_SESSION_BODY = 1024
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def load_files() -> dict[str, tuple[bytes, str, str]]:
    """Each file's bytes, type and ETag, read once from the installed package."""
    static = resources.files("openclaw.console").joinpath("static")
    found = {}
    for name, kind in FILES.items():
        body = static.joinpath(name).read_bytes()
        found[name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    return found


def own_origins(host: str, port: int) -> set[str]:
    """The browser origins of a page served on ``host:port``: the loopback names for a loopback or wildcard bind."""
    if host in ("127.0.0.1", "::1", "0.0.0.0", "::", ""):
        return {f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"}
    return {f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"}


def websocket_origin(url: str) -> str:
    """``wss://host:port`` of a gateway URL, for ``connect-src``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class ConsoleApp:
    """
    :param gateway_port: the gateway's bound port (None before it listens).
    :param web: the ``web`` section: ``console`` (served at all) and
        ``console_gateway_url`` (where the page finds the gateway when it
        is not this host's gateway port: a TLS proxy); a reload applies both.
    """

    app = Klein()

    def __init__(self, codes: LinkCodes, token: Callable[[], str], gateway_port: Callable[[], int | None],
                 web: WebConfig = WebConfig()) -> None:
        self.codes = codes
        self.token = token
        self.gateway_port = gateway_port
        self._files: dict[str, tuple[bytes, str, str]] | None = None
        self.reconfigure(web)

    @property
    def files(self) -> dict[str, tuple[bytes, str, str]]:
        """Read at the first request, not while the tree is built."""
        if self._files is None:
            self._files = load_files()
        return self._files

    def reconfigure(self, web: WebConfig) -> None:
        self.enabled = web.console
        self.gateway_url = web.console_gateway_url

    def gateway_for(self, request: Any) -> str | None:
        """The gateway URL a page loaded by ``request`` connects to: this host name, the gateway's port."""
        if self.gateway_url:
            return self.gateway_url
        port = self.gateway_port()
        if port is None:
            return None
        host = request.getRequestHostname().decode("ascii", "replace")
        if not _HOST.fullmatch(host):
            host = "127.0.0.1"
        return f"ws://{host}:{port}/"

    def _headers(self, request: Any, kind: str, cache: str) -> None:
        gateway = self.gateway_for(request)
        connect = "'self'" + (f" {websocket_origin(gateway)}" if gateway else "")
        request.setHeader(b"Content-Type", kind.encode())
        request.setHeader(b"Content-Security-Policy", (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {connect}; frame-src 'self'; form-action 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; object-src 'none'").encode())
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"Cache-Control", cache.encode())

    def _json(self, request: Any, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        self._headers(request, "application/json", "no-store")
        return orjson.dumps(body)

    def _file(self, request: Any, name: str) -> bytes:
        body, kind, etag = self.files[name]
        # The page itself is never stored; the code revalidates by ETag; the icon may wait a day.
        cache = {"index.html": "no-store", "icon.svg": "max-age=86400"}.get(name, "no-cache")
        self._headers(request, kind, cache)
        request.setHeader(b"ETag", etag.encode())
        if request.getHeader(b"If-None-Match") == etag:
            request.setResponseCode(304)
            return b""
        return body

    @app.route("/", methods=["GET", "HEAD"])
    def index(self, request: Any) -> bytes:
        return self._file(request, "index.html")

    @app.route("/config.json", methods=["GET", "HEAD"])
    def config(self, request: Any) -> bytes:
        gateway = self.gateway_for(request)
        if gateway is None:
            return self._json(request, 503, {"error": {"code": "starting", "message": "the gateway is not listening yet"}})
        return self._json(request, 200, {"gateway": gateway})

    @app.route("/session", methods=["POST"])
    def session(self, request: Any) -> bytes:
        """A live one-time code (from ``openclaw console``) for the token; the code is used up."""
        try:
            code = orjson.loads(request.content.read(MAX_SESSION_BODY + 1) or b"{}").get("code")
        except (orjson.JSONDecodeError, AttributeError):
            code = None
        accepted = self.codes.redeem(code)
        log(CONSOLE_CODE, level="info" if accepted else "warn", accepted=accepted,
            peer=getattr(request.getClientAddress(), "host", "?"))
        if not accepted:
            return self._json(request, 403, {"error": {
                "code": "invalid_code", "message": "this link is used or expired; run openclaw console again"}})
        return self._json(request, 200, {"token": self.token()})

    @app.route("/<name>", methods=["GET", "HEAD"])
    def asset(self, request: Any, name: str) -> bytes:
        if name not in self.files:
            raise NotFound()
        return self._file(request, name)

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Any) -> bytes:
        return self._json(request, 404, {"error": {"code": "not_found", "path": request.path.decode("utf-8", "replace")}})

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: Any, failure: Any) -> bytes:
        return self._json(request, 405, {"error": {"code": "method_not_allowed", "method": request.method.decode()}})


def _bound(port: Any) -> Any:
    """A listening port's TCP address, or None (not bound, or a UNIX socket)."""
    host = port.getHost() if port is not None else None
    return host if host is not None and hasattr(host, "port") else None


def listener_origins(port: Any) -> set[str]:
    """The console's origins for the web listener's ``port``."""
    host = _bound(port)
    return set() if host is None else own_origins(host.host, host.port)


def link_url(port: Any, code: str) -> str | None:
    """The one-time link: the code after ``#``, which browsers send to no server and no ``Referer``."""
    host = _bound(port)
    return None if host is None else address_url("http", host.host, host.port) + f"console/#code={code}"
