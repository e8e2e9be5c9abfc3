"""
``twistd openclaw``: command-line options and the service tree.

``makeService`` only builds objects; services do their I/O when started.
The order of ``build_service`` is the start order (docs/recovery.md):
logging, store, state, gateway, web, connectors, pipeline (lanes), outbox,
the proactive engine (checks, heartbeat, cron, mail), systemd notify.  Stopping drains and then stops the same list
backwards.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage

from openclaw import __version__
from openclaw.agent.factory import make_brain
from openclaw.agent.tools import all_tools
from openclaw.config import EX_CONFIG, Config, ConfigError, default_home, load_config
from openclaw.connectors.service import ConnectorsService, make_connectors
from openclaw.daemon import DaemonService
from openclaw.events import OutboxItem, new_event_id
from openclaw.facts import RuntimeFacts
from openclaw.gateway.chat import WebchatHub, chat_methods
from openclaw.gateway.methods import core_methods
from openclaw.gateway.pairing import pairing_methods
from openclaw.gateway.service import GatewayService
from openclaw.logs import LoggingService
from openclaw.notify import Notifier
from openclaw.outbox import OutboxService
from openclaw.pipeline import Pipeline
from openclaw.proactive.engine import build_engine
from openclaw.runtime import Runtime
from openclaw.state import StateService
from openclaw.store import make_store
from openclaw.store.pruning import PruneService
from openclaw.system.sdnotify import SDNotifier
from openclaw.system.systemd_service import SystemdService
from openclaw.web import WebService


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the openclaw daemon. With no options it keeps its data in "
        "$OPENCLAW_HOME (else ~/.openclaw), serves the gateway on "
        "127.0.0.1:18789 and /health, /metrics on 127.0.0.1:8080. "
        "Endpoints are Twisted strports strings (tcp:0, unix:/path). "
        "A bad configuration exits with status 78."
    )
    optParameters = [
        ["config", "c", None, "YAML config file (default: $OPENCLAW_CONFIG, else none: built-in defaults)"],
        ["home", None, None, "home directory for data, logs and the token (default: $OPENCLAW_HOME, else ~/.openclaw)"],
        ["gateway", None, None, "gateway endpoint (default: tcp:18789:interface=127.0.0.1)"],
        ["web", None, None, "health/metrics endpoint (default: tcp:8080:interface=127.0.0.1)"],
        ["log-level", None, None, "error, warn, info, debug or trace (default: $LOG_LEVEL, else info)"],
    ]

    def postOptions(self) -> None:
        overrides = {
            "gateway.listen": self["gateway"],
            "web.listen": self["web"],
            "log.level": self["log-level"],
        }
        path = self["config"] or os.environ.get("OPENCLAW_CONFIG") or None
        try:
            self.config = load_config(path, os.environ, overrides)
        except ConfigError as e:
            sys.stderr.write(f"{e}\n")
            raise SystemExit(EX_CONFIG)
        self.home = os.path.abspath(os.path.expanduser(self["home"] or default_home()))


def status_line(runtime: Runtime) -> str:
    """The short summary systemd shows in ``systemctl status``."""
    gateway = runtime.gateway()
    return (
        f"{runtime.phase}; {gateway.get('connections', 0)} gateway connections; "
        f"{len(runtime.sessions)} sessions"
    )


def build_service(
    config: Config, home: str, reactor: Any, owns_process: bool = False,
    console: bool = True, environ: Any = os.environ,
) -> DaemonService:
    """
    The whole tree, children added in start order.  ``owns_process`` (twistd
    only) adds signal handling and raises the open-files limit.
    """
    runtime = Runtime(reactor, config.digest())
    root = DaemonService(runtime, reactor, home, owns_process)
    data = os.path.join(home, "data")
    store = make_store(config.store, home, reactor)
    hub = WebchatHub()
    outbox = OutboxService(reactor, store, {"webchat": hub.deliver}, max_attempts=config.outbox.max_attempts,
                           counts=runtime.outbox)
    facts = RuntimeFacts(runtime)

    def enqueue(session_id: str, text: str) -> Any:
        channel = session_id.split(":", 1)[0]
        item = OutboxItem(session_id=session_id, channel=channel, text=text,
                          dedupe_key=f"tool:{new_event_id()}", created_at=reactor.seconds(),
                          next_attempt=reactor.seconds())
        d = store.enqueue_outbox(item)
        d.addCallback(lambda result: (outbox.kick(), result)[1])
        return d

    brain = make_brain(
        config.brain, reactor, facts,
        all_tools(reactor, facts, store, enqueue, facts.sessions), environ,
    )
    pipeline = Pipeline(
        runtime, store, brain, outbox, history=config.brain.history,
        max_concurrent=config.lanes.max_concurrent, max_queue=config.lanes.max_queue,
        idle_after=config.lanes.idle_after,
    )
    methods = core_methods(runtime)
    methods.update(chat_methods(pipeline, store, hub, outbox.kick))
    gateway = GatewayService(reactor, runtime, config.gateway, os.path.join(home, "gateway.token"), methods)
    gateway.close_listeners.append(hub.forget)
    notifier = Notifier(reactor, store, hub.push, outbox.kick, config.heartbeat.target)
    connectors = ConnectorsService(runtime)
    for connector in make_connectors(config.connectors, reactor, pipeline, store, notifier, environ):
        connector.setServiceParent(connectors)
        outbox.deliverers[connector.name] = connector.deliver
    runtime.connectors = connectors.health
    methods.update(pairing_methods(store, reactor))
    static_secrets = config.secrets(environ)  # read once: the logger asks per record
    logging = LoggingService(
        home, config.log.level, config.log.max_bytes, config.log.backups,
        secrets=lambda: [*static_secrets, gateway.token], console=console,
    )
    engine = build_engine(config, home, reactor, runtime, store, brain, notifier, hub.push,
                          logging.recent_errors, environ)
    methods.update(engine.methods)
    root.when_ready.append(lambda: store.append_journal(
        "startup", reactor.seconds(), {"version": __version__, "pid": os.getpid()}))
    children = [
        ("logging", logging),
        ("store", store),
        ("state", StateService(runtime, os.path.join(data, "gateway-state.json"), config.state.save_every)),
        ("gateway", gateway),
        ("web", WebService(reactor, runtime, config.web.listen, home=home, limits=config.web,
                           webhooks={c.name: c.webhook for c in connectors if hasattr(c, "webhook")})),
        ("connectors", connectors),
        ("pipeline", pipeline),
        ("outbox", outbox),
        ("prune", PruneService(reactor, store, config.store.retention)),
        *engine.children,
        ("systemd", SystemdService(SDNotifier.from_environ(environ), reactor, lambda: status_line(runtime), environ)),
    ]
    for name, child in children:
        child.setName(name)
        child.setServiceParent(root)
    return root


def makeService(options: Options) -> DaemonService:
    from twisted.internet import reactor

    return build_service(options.config, options.home, reactor, owns_process=True)
