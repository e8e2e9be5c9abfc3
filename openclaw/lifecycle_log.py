"""
The Eliot types of the daemon's life: starting, draining and stopping the
service tree, readiness, stop signals, and reloading the configuration.

They live apart from ``daemon.py`` / ``ordered.py`` (which emit them) so
those modules can change without touching the declarations; the
validating test logger checks messages written under these names either
way.  ``SERVICE_STEPS`` maps a walk's step (``drain``, ``stop``) to its type.
"""

from openclaw.eliotutil import action_type, message_type, typed

SERVICE = typed("service", [str], "the child service's name")
REASON = typed("reason", [str], "why")
REASON_OR_EMPTY = typed("reason", [str], "why it was rejected (empty otherwise)")

SERVICE_START = action_type("openclaw:service:start", [SERVICE], [],
                            "one child service of the daemon starting, in start order")
SERVICE_DRAIN = action_type("openclaw:service:drain", [SERVICE], [],
                            "one child finishing in-flight work at shutdown, last started first")
SERVICE_STOP = action_type("openclaw:service:stop", [SERVICE], [], "one child stopping, in reverse start order")
SERVICE_STEPS = {"drain": SERVICE_DRAIN, "stop": SERVICE_STOP}

DAEMON_READY = message_type("openclaw:daemon:ready", [
    typed("services", [list], "the children, in start order"),
    typed("nofile", [int, None], "the open-files limit raised to, if the daemon owns the process"),
], "every service started")
DAEMON_WHERE = message_type("openclaw:daemon:where", [
    typed("gateway", [str], "the gateway URL clients connect to"),
    typed("health", [str], "the /health URL"),
    typed("auth_file", [str], "where the gateway token is (the field is not named token: that name is redacted)"),
    typed("config_file", [str], "the config file read (or none)"),
    typed("logs", [str], "the JSON log files"),
    typed("store", [str], "the store (no credentials)"),
], "the start-up banner: where to connect, and where the token, config, logs and store are")
DAEMON_STARTUP_FAILED = message_type("openclaw:daemon:startup-failed", [REASON],
                                     "a service could not start: the daemon exits 1", "error")
DAEMON_HURRY = message_type("openclaw:daemon:hurry", [],
                            "second SIGTERM/SIGINT: stop waiting for in-flight work", "warn")

DAEMON_SIGNAL = message_type("openclaw:daemon:signal", [
    typed("signal", [str], "SIGTERM or SIGINT"), typed("effect", [str], "drain (the first) or hurry (the second)"),
], "a stop signal arrived", "warn")
DAEMON_DRAIN = action_type("openclaw:daemon:drain", [
    typed("budget", [int, float], "seconds the whole drain may take (daemon.drain_timeout)"),
], [
    typed("failures", [int], "children whose drain failed"),
    typed("overrun", [int, float], "seconds past the budget the drain took"),
], "the shutdown: admit nothing new, then drain the children last started first")
DAEMON_DRAIN_BUDGET_SPENT = message_type("openclaw:daemon:drain-budget-spent", [SERVICE],
                                         "the drain budget ran out while this child drained: it is hurried", "warn")

DAEMON_RELOAD = action_type("openclaw:daemon:reload", [], [],
                            "the configuration read again and applied to the running tree by difference")
DAEMON_RELOADED = message_type("openclaw:daemon:reloaded", [
    typed("result", [str], "applied, rejected or unchanged"), typed("at", [int, float], "when, epoch seconds"),
    REASON_OR_EMPTY, typed("changed", [list], "the config sections that changed"),
    typed("restart_needed", [list], "changes that take effect only after a restart"),
    typed("failed", [list], "services whose reconfiguration failed (they run as they were)"),
    typed("digest", [str], "the applied configuration's digest"),
], "what a reload did (error when rejected, warn when a restart is needed or a service failed)")
DAEMON_TLS_LOADED = message_type("openclaw:daemon:tls-loaded", [
    typed("users", [list], "the parts of the new configuration that may speak TLS"),
], "a daemon started with nothing in its config that speaks TLS lets the TLS stack in for a reload that adds a connector, model provider or check")
DAEMON_RECONFIGURE_FAILED = message_type("openclaw:daemon:reconfigure-failed", [
    SERVICE, typed("error", [str], "why"),
], "a service could not take its new configuration; it keeps the old one", "error")
