"""
The service tree: ``build_service`` is its one factory.

Every collaborator is finished before the one that needs it is built, and
the ``children`` list at its end is the start order, with each child's
drain role beside it.  Stopping refuses new work everywhere at once, drains
that list backwards within one budget (``daemon.drain_timeout``), then stops
it backwards.  Importing this module imports the reactor and everything the
daemon may run; ``openclaw.tap`` imports it only once the configuration is
known (``openclaw.system.tlsstack``).
"""

from __future__ import annotations

import os
from typing import Any

from openclaw import __version__, runfile
from openclaw.agent.factory import make_brain
from openclaw.agent.service import BrainService
from openclaw.agent.tools import all_tools
from openclaw.cluster import SCHEDULER, cluster_methods, make_cluster
from openclaw.cluster.gate import Gated, HeldClock
from openclaw.config import BrainConfig, Config, ConfigSource
from openclaw.console.feed import ConsoleFeed, overview
from openclaw.console.links import LinkCodes
from openclaw.console.site import ConsoleApp, link_url, listener_origins
from openclaw.connectors.service import ChannelRoutes, ConnectorsService, make_connectors
from openclaw.daemon import DaemonService
from openclaw.events import OutboxItem, new_event_id
from openclaw.facts import RuntimeFacts
from openclaw.gateway.chat import WebchatHub, chat_methods
from openclaw.gateway.console_methods import console_methods
from openclaw.gateway.fanout import webchat_fanout
from openclaw.gateway.methods import core_methods, reload_method
from openclaw.gateway.pairing import pairing_methods
from openclaw.gateway.service import GatewayService
from openclaw.logs import LoggingService, scrub_text
from openclaw.notify import Notifier
from openclaw.outbox import OutboxService
from openclaw.pipeline import Pipeline
from openclaw.proactive.engine import build_engine
from openclaw.runtime import Runtime
from openclaw.shards import shard_children, uses_streams
from openclaw.state import StateService
from openclaw.status import TreeStatus
from openclaw.store import make_store
from openclaw.store.pruning import PruneService
from openclaw.system.sdnotify import SDNotifier
from openclaw.system.systemd_service import SystemdService
from openclaw.web import WebService


def status_line(runtime: Runtime, tree: TreeStatus) -> str:
    """The short summary systemd shows in ``systemctl status``."""
    gateway = tree.section("gateway", {})
    return (
        f"{runtime.phase}; {gateway.get('connections', 0)} gateway connections; "
        f"{len(runtime.sessions)} sessions"
    )


def build_service(
    config: Config, home: str, reactor: Any, owns_process: bool = False,
    console: bool = True, environ: Any = os.environ, source: ConfigSource | None = None,
) -> DaemonService:
    """
    The whole tree for ``config``.  ``owns_process`` (twistd only) adds
    signal handling and raises the open-files limit; ``source`` says where
    the config came from, so a reload re-reads it the same way (without
    one, a reload re-applies ``config``).
    """
    runtime = Runtime(reactor, config.digest())
    known_secrets = SecretsOf(environ)
    runtime.config_path = source.path() if source is not None else None
    sd = SDNotifier.from_environ(environ)
    # The root first: what the services report is read through it (/health,
    # the rules brain, the heartbeat's snapshot), and a reload goes through it.
    root = DaemonService(
        runtime, reactor, home, config, owns_process,
        load_config=source.load if source is not None else None,
        notify=sd.send if sd is not None else (lambda **fields: None),
        runfile_facts=lambda: listening_facts(gateway, web, runtime, source),
    )
    tree = TreeStatus(root)
    data = os.path.join(home, "data")
    store = make_store(config.store, home, reactor)
    cluster = make_cluster(config, reactor, store)  # who else shares the store, and which leases this one holds
    hub = WebchatHub(reactor)
    fanout = webchat_fanout(config, reactor, store, hub, cluster)  # Redis: replies reach other instances' clients
    # Secrets as the running config has them; the gateway token is made at
    # start.  Both are looked up when asked (the logger: per record).
    secrets = lambda: [*known_secrets(root.config), gateway.token]  # noqa: E731
    connectors = ConnectorsService(runtime, lambda section: make_connectors(
        section, reactor, pipeline, store, notifier, environ), cluster=cluster)
    outbox = OutboxService(reactor, store, ChannelRoutes({"webchat": (fanout or hub).deliver}, connectors),
                           max_attempts=config.outbox.max_attempts,
                           redact=lambda text: scrub_text(text, secrets()), only_deliverable=uses_streams(config))
    facts = RuntimeFacts(runtime, tree)

    def enqueue(session_id: str, text: str) -> Any:
        channel = session_id.split(":", 1)[0]
        item = OutboxItem(session_id=session_id, channel=channel, text=text,
                          dedupe_key=f"tool:{new_event_id()}", created_at=reactor.seconds(),
                          next_attempt=reactor.seconds())
        d = store.enqueue_outbox(item)
        d.addCallback(lambda result: (outbox.kick(), result)[1])
        return d

    def brain_for(brain_config: BrainConfig) -> Any:
        tools = all_tools(reactor, facts, store, enqueue, facts.sessions, http_allow=brain_config.http_check_allow)
        return make_brain(brain_config, reactor, facts, tools, environ)

    brains = BrainService(config.brain, brain_for)
    brain = brains.brain
    pipeline = Pipeline(runtime, store, brain, outbox, config.brain.history, config.lanes,
                        streams=uses_streams(config))
    notifier = Notifier(reactor, store, hub.push, outbox.kick, config.heartbeat.target)
    connectors.build(config.connectors)
    logging = LoggingService(
        home, config.log.level, config.log.max_bytes, config.log.backups,
        secrets=secrets, console=console, flush_interval=config.log.flush_interval,
        banner={"config": runtime.config_path or "built-in defaults", "home": home,
                "version": __version__, "digest": runtime.config_digest},
    )
    engine = build_engine(config, home, reactor, runtime, tree, store, brain, notifier, hub.push,
                          logging.recent_errors, environ, save_state=None if cluster.alone else (
                              lambda key, value: cluster.guarded_set_state(SCHEDULER, key, value)),
                          timers=None if cluster.alone else HeldClock(reactor, lambda: cluster.holds(SCHEDULER)))
    # The web console: one-time links, the live feed, and its own origin on the gateway.
    codes = LinkCodes(reactor)
    feed = ConsoleFeed(reactor, lambda: overview(runtime, tree, lambda: logging.seq))
    console_app = ConsoleApp(codes, lambda: gateway.token, lambda: gateway.port and gateway.port.getHost().port,
                             config.web)
    methods = {
        **core_methods(runtime, tree),
        **console_methods(codes, feed, logging, lambda code: link_url(web.port, code) if console_app.enabled else None),
        **reload_method(root.reload),
        **chat_methods(pipeline, store, hub, outbox.kick),
        **pairing_methods(store, reactor, lambda: root.config.connectors),
        **engine.methods,
        **cluster_methods(cluster),
    }
    gateway = GatewayService(reactor, runtime, config.gateway, os.path.join(home, "gateway.token"), methods,
                             on_close=lambda conn: (hub.forget(conn), feed.forget(conn)),
                             console_origins=lambda: listener_origins(web.port) if console_app.enabled else set())
    web = WebService(reactor, runtime, config.web.listen, home=home, webhooks=connectors.webhooks,
                     limits=config.web, tree=tree, console=console_app)
    root.when_ready.append(lambda: store.append_journal(
        "startup", reactor.seconds(), {"version": __version__, "pid": os.getpid()}))
    # Start order.  Drain runs this list backwards: the engine stops making
    # work, the pipeline finishes (or, past the budget, abandons) what it
    # took, the outbox then sends the replies that produced, and only then
    # do connectors and gateway connections close.
    children = [
        ("logging", logging),        # first up, last down: everything logs
        ("store", store),            # closed last of the working parts; reports failures (GuardedStore)
        ("cluster", cluster),        # leases: stopping releases them once the work they guard has stopped
        *([("webchat-fanout", fanout)] if fanout else []),  # Redis: pushes what any instance publishes
        ("brain", brains),           # the model (a reload may replace it)
        ("state", StateService(runtime, os.path.join(data, "gateway-state.json"), config.state.save_every)),
        ("web", web),                # answers /health ("draining") until the stop phase
        ("gateway", gateway),        # drain: stops listening at once; connections close last
        ("console", feed),           # the console's live feed to gateway connections
        ("connectors", connectors),  # kept up until the outbox has flushed
        ("outbox", outbox),          # drain: one more pass for replies made while draining
        ("pipeline", pipeline),      # drain: in-flight messages finish; hurried: abandoned, durable
        *shard_children(config, reactor, store, cluster, pipeline),  # Redis: reads the held shards' streams into it
        ("notifier", notifier),      # alerts' target (reloadable); no I/O of its own
        # The scheduler's work runs only on the instance holding its lease.
        *[(name, Gated(child, cluster, SCHEDULER)) for name, child in [
            ("prune", PruneService(reactor, store, config.store.retention)),
            *engine.children,        # drain: no new beats, checks, cron runs or mail
        ]],
        ("systemd", SystemdService(sd, reactor, lambda: status_line(runtime, tree), environ)),  # drain: STOPPING=1 first
    ]
    for name, child in children:
        child.setName(name)
        child.setServiceParent(root)
    return root


class SecretsOf:
    """A config's secrets, read once per config: the logger asks for every record."""

    def __init__(self, environ: Any) -> None:
        self._environ = environ
        self._config: Config | None = None
        self._secrets: list[str] = []

    def __call__(self, config: Config) -> list[str]:
        if config is not self._config:
            self._config, self._secrets = config, config.secrets(self._environ)
        return self._secrets


def listening_facts(
    gateway: GatewayService, web: WebService, runtime: Runtime, source: ConfigSource | None = None,
) -> dict[str, Any]:
    """
    What ``<home>/daemon.json`` tells CLI commands: the addresses actually
    bound, and the command-line overrides (so ``doctor`` compares the file
    with the running config as the daemon layered it).
    """
    facts: dict[str, Any] = {"config": runtime.config_path, "started_at": runtime.started_at}
    if source is not None:
        facts["overrides"] = {k: v for k, v in source.overrides.items() if v is not None}
    for name, service, scheme in (("gateway", gateway, "ws"), ("web", web, "http")):
        host = service.port.getHost() if service.port is not None else None
        if host is not None and hasattr(host, "port"):
            facts[name] = runfile.address_url(scheme, host.host, host.port)
    return facts
