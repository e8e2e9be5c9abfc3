"""
``twistd openclaw``: command-line options, then the service tree.

The options load and check the configuration before anything imports the
reactor, so a bad config exits 78 having bound and created nothing, and a
configuration that speaks no TLS keeps the TLS stack out of the process
(``openclaw.system.tlsstack``).  ``makeService`` only builds objects
(``openclaw.tree``); services do their I/O when started.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from twisted.python import usage

from openclaw.config import EX_CONFIG, ConfigError, ConfigSource, default_home
from openclaw.system import homelock, tlsstack
from openclaw.system.homelock import HomeLocked

if TYPE_CHECKING:
    from openclaw.daemon import DaemonService


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the openclaw daemon. With no options it keeps its data in "
        "$OPENCLAW_HOME (else ~/.openclaw), reads <home>/openclaw.yaml if it "
        "exists, serves the gateway on 127.0.0.1:18789 and /health, /metrics "
        "on 127.0.0.1:8080. Endpoints are Twisted strports strings (tcp:0, "
        "unix:/path). A bad configuration exits with status 78, a home held "
        "by another daemon with 73."
    )
    optParameters = [
        ["config", "c", None, "YAML config file (default: $OPENCLAW_CONFIG, else <home>/openclaw.yaml if it exists)"],
        ["home", None, None, "home directory for data, logs and the token (default: $OPENCLAW_HOME, else ~/.openclaw)"],
        ["gateway", None, None, "gateway endpoint (default: tcp:18789:interface=127.0.0.1)"],
        ["web", None, None, "health/metrics endpoint (default: tcp:8080:interface=127.0.0.1)"],
        ["log-level", None, None, "error, warn, info, debug or trace (default: $LOG_LEVEL, else info)"],
    ]

    def postOptions(self) -> None:
        self.home = os.path.abspath(os.path.expanduser(self["home"] or default_home()))
        self.source = ConfigSource(self["config"], self.home, os.environ, {
            "gateway.listen": self["gateway"],
            "web.listen": self["web"],
            "log.level": self["log-level"],
        })
        try:
            self.config = self.source.load(before_endpoints=tlsstack.leave_unloaded)
        except ConfigError as e:
            sys.stderr.write(f"{e}\n")
            raise SystemExit(EX_CONFIG)


def makeService(options: Options) -> DaemonService:
    from twisted.internet import reactor

    from openclaw.tree import build_service

    # The one piece of I/O here: a second daemon on this home must stop
    # before twistd opens its log or anything is bound, with one line.
    try:
        lock = homelock.acquire(options.home)
    except (HomeLocked, OSError) as e:
        sys.stderr.write(f"openclaw: {e}\n")
        raise SystemExit(homelock.EX_LOCKED if isinstance(e, HomeLocked) else 1)
    root = build_service(options.config, options.home, reactor, owns_process=True, source=options.source)
    root.hold_lock(lock)
    return root


#: What this module held before the tree moved to ``openclaw.tree``.
_MOVED_TO_TREE = ("build_service", "status_line", "SecretsOf", "listening_facts")


def __getattr__(name: str) -> Any:
    """``from openclaw.tap import build_service`` still works, importing the tree only when asked."""
    if name in _MOVED_TO_TREE:
        from openclaw import tree

        return getattr(tree, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
