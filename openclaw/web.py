"""
The health and metrics web service (Klein): ``/health``, ``/livez``,
``/readyz``, ``/metrics``, the chat platforms' ``/webhooks/<name>``, the
morning reports at ``/reports/YYYY-MM-DD`` and the web console at ``/console/``.
Unknown paths get a JSON 404.

``/livez`` answers 200 whenever the reactor runs (a chat platform outage must
not get the process restarted); ``/readyz`` only while running; ``/health``
reports everything and is 503 when any part is unhealthy.
"""

from __future__ import annotations

from typing import Any

import orjson
from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from zope.interface import implementer

from openclaw import health, metrics
from openclaw.config import WebConfig
from openclaw.console.site import MAX_SESSION_BODY
from openclaw.eliotutil import enabled, log
from openclaw.interfaces import IReconfigurable
from openclaw.listening import ListeningService
from openclaw.proactive.report import report_html
from openclaw.runtime import RUNNING, Runtime
from openclaw.status import NO_SERVICES, TreeStatus
from openclaw.web_limits import LimitedSite


def _json(request: Any, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return orjson.dumps(body)


class HealthApp:
    """The routes; separate from the service so tests can serve it anywhere."""

    app = Klein()

    def __init__(self, runtime: Runtime, webhooks: dict[str, Any] | None = None, home: str | None = None,
                 tree: TreeStatus = NO_SERVICES, console: Any = None) -> None:
        self.runtime = runtime
        self.console = console
        self.tree = tree
        self.home = home
        #: Platform webhooks by name (Telegram, WhatsApp): ``handler(request)``
        #: returns the body (or a Deferred of it) and sets the code.
        self.webhooks = webhooks if webhooks is not None else {}

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: Any) -> bytes:
        code, body = health.report(self.runtime, health.memory(), self.tree)
        return _json(request, code, body)

    @app.route("/livez", methods=["GET", "HEAD"])
    def livez(self, request: Any) -> bytes:
        return _json(request, 200, {"status": "alive", "uptime": round(self.runtime.uptime(), 3)})

    @app.route("/readyz", methods=["GET", "HEAD"])
    def readyz(self, request: Any) -> bytes:
        ready = self.runtime.phase == RUNNING and self.tree.ready()
        body: dict[str, Any] = {"status": self.runtime.phase, "ready": ready}
        if not ready and self.runtime.phase == RUNNING:
            body["problems"] = self.tree.problems()
            body["store"] = self.tree.section("store")
        return _json(request, 200 if ready else 503, body)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(metrics.REGISTRY)

    @app.route("/webhooks/<name>", methods=["GET", "POST"])
    def webhook(self, request: Any, name: str) -> Any:
        handler = self.webhooks.get(name)
        if handler is None:
            raise NotFound()
        return handler(request)

    @app.route("/reports/<day>", methods=["GET", "HEAD"])
    def report(self, request: Any, day: str) -> bytes:
        page = report_html(self.home, day) if self.home else None  # real dates only: no path traversal
        if page is None:
            raise NotFound()
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", b"default-src 'none'; style-src 'unsafe-inline'")
        return page

    @app.route("/console/", branch=True)
    def console(self, request: Any) -> Any:
        if self.console is None or not self.console.enabled:  # web.console: false
            raise NotFound()
        return self.console.app.resource()

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Any) -> bytes:
        return _json(request, 404, {"error": {"code": "not_found", "path": request.path.decode("utf-8", "replace")}})

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: Any, failure: Any) -> bytes:
        return _json(request, 405, {"error": {"code": "method_not_allowed", "method": request.method.decode()}})


def body_limit(limits: WebConfig, method: bytes, path: bytes) -> int:
    """
    Each route's body cap: webhook POSTs get ``web.max_webhook_body``, the
    console's code exchange a few hundred bytes; every other route is
    GET-only and takes no body at all.
    """
    if method == b"POST" and path.startswith(b"/webhooks/"):
        return limits.max_webhook_body
    if method == b"POST" and path == b"/console/session":
        return MAX_SESSION_BODY
    return 0


class QuietSite(LimitedSite):
    """A limited Site whose access log is a debug-level Eliot message, not a line per probe."""

    noisy = False

    def log(self, request: Any) -> None:
        if enabled("debug"):
            log("openclaw:web:request", level="debug", method=request.method.decode(),
                path=request.path.decode("utf-8", "replace"), code=request.code)


@implementer(IReconfigurable)
class WebService(ListeningService):
    """Serves ``HealthApp`` on ``web.listen``."""


    def __init__(
        self, reactor: Any, runtime: Runtime, description: str,
        webhooks: dict[str, Any] | None = None, home: str | None = None, limits: WebConfig = WebConfig(),
        tree: TreeStatus = NO_SERVICES, console: Any = None,
    ) -> None:
        site = QuietSite(HealthApp(runtime, webhooks, home, tree, console).app.resource(), limits, body_limit)
        super().__init__(reactor, description, site, "web.listen", limits.backlog)
        self.console = console

    def reconfigure(self, config: Any) -> None:
        """New limits and console settings apply to the next connection and request (``web.listen`` needs a restart)."""
        self.factory.reconfigure(config.web)
        if self.console is not None:
            self.console.reconfigure(config.web)
