"""
The gateway's methods besides ``connect``: each takes the connection and the
request's params and returns a JSON-ready payload or a Deferred of one.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from openclaw import health
from openclaw.runtime import Runtime

Method = Callable[[Any, dict], Any]


def core_methods(runtime: Runtime, tree: Any) -> dict[str, Method]:
    """``ping``, ``health`` (the ``/health`` body) and ``status``; ``tree`` is the services' ``TreeStatus``."""
    return {
        "ping": lambda conn, params: {"pong": True, "time": runtime.clock.seconds()},
        "health": lambda conn, params: health.report(runtime, health.memory(), tree)[1],
        "status": lambda conn, params: health.status(runtime, tree),
    }


def reload_method(reload: Callable[[], Deferred]) -> dict[str, Method]:
    """``reload``: re-read the config as SIGHUP does; answers with the outcome."""
    return {"reload": lambda conn, params: reload().addCallback(lambda outcome: health.reload_json(outcome.as_json()))}
