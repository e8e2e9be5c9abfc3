"""
The Eliot types of the daemon's life: starting, draining and stopping the
service tree, readiness, and reloading the configuration.

They live apart from ``daemon.py`` / ``ordered.py`` (which emit them) so
those modules can change without touching the declarations; the
validating test logger checks messages written under these names either
way.  ``SERVICE_STEPS`` maps a walk's step (``drain``, ``stop``) to its type.
"""

from openclaw.eliotutil import action_type, message_type, typed

SERVICE = typed("service", [str], "the child service's name")
REASON = typed("reason", [str], "why")

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
DAEMON_STARTUP_FAILED = message_type("openclaw:daemon:startup-failed", [REASON],
                                     "a service could not start: the daemon exits 1", "error")
DAEMON_HURRY = message_type("openclaw:daemon:hurry", [],
                            "second SIGTERM/SIGINT: stop waiting for in-flight work", "warn")

DAEMON_RELOAD = action_type("openclaw:daemon:reload", [typed("trigger", [str], "SIGHUP or the control command")], [
    typed("changed", [list], "the services reconfigured, started or stopped"),
], "the configuration read again and applied to the running tree")
DAEMON_RELOAD_REFUSED = message_type("openclaw:daemon:reload-refused", [REASON],
                                     "the new configuration is invalid: the running one stays", "warn")
