"""Run the whole service tree in-process on ephemeral 127.0.0.1 ports."""

from __future__ import annotations

import os
from typing import Any

import treq
from twisted.internet import defer, reactor

from openclaw.config import Config, ConfigSource, build_config
from openclaw.tree import build_service


def daemon_config(**sections: Any) -> Config:
    """Defaults with both listeners on ephemeral loopback ports."""
    document = {
        "gateway": {"listen": "tcp:0:interface=127.0.0.1"},
        "web": {"listen": "tcp:0:interface=127.0.0.1"},
    }
    for name, values in sections.items():
        if isinstance(values, list):  # checks, cron, mail: lists of entries
            document[name] = values
        else:
            document.setdefault(name, {}).update(values)
    return build_config(document)


#: Daemons started and not stopped yet: the conftest stops what a failed test left running.
RUNNING: list["RunningDaemon"] = []

EPHEMERAL = {"gateway.listen": "tcp:0:interface=127.0.0.1", "web.listen": "tcp:0:interface=127.0.0.1"}


def file_source(home: str, text: str, environ: dict | None = None) -> ConfigSource:
    """``<home>/openclaw.yaml`` holding ``text``, found the daemon's way, listeners on ephemeral ports."""
    os.makedirs(home, mode=0o700, exist_ok=True)
    with open(os.path.join(home, "openclaw.yaml"), "w", encoding="utf-8") as f:
        f.write(text)
    return ConfigSource(None, home, environ or {}, EPHEMERAL)


class RunningDaemon:
    """
    A started tree (the real one: ``tree.build_service``) and the ports it
    listens on.  With a ``source`` the config is read from it (and a reload
    reads it again).
    """

    def __init__(self, home: str, config: Config | None = None, environ: dict | None = None,
                 source: ConfigSource | None = None) -> None:
        self.home = home
        self.config = config or (source.load() if source is not None else daemon_config())
        self.service = build_service(self.config, home, reactor, console=False, environ=environ or {}, source=source)
        RUNNING.append(self)
        self.service.startService()
        self.runtime = self.service.runtime
        self.gateway = self.service.getServiceNamed("gateway")
        self.web_port = self.service.getServiceNamed("web").port.getHost().port
        self.gateway_port = self.gateway.port.getHost().port

    @property
    def token(self) -> str:
        return self.gateway.token

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    @defer.inlineCallbacks
    def get(self, path: str) -> Any:
        response = yield treq.get(self.url(path), persistent=False)
        body = yield response.content()
        return response.code, response.headers, body

    def stop(self) -> defer.Deferred:
        if self in RUNNING:
            RUNNING.remove(self)
        if not self.service.running:
            return defer.succeed(None)
        return defer.maybeDeferred(self.service.stopService)
