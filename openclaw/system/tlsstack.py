"""
Whether this process loads the TLS stack.

Twisted's reactor imports pyOpenSSL and cryptography whenever they are
installed (``twisted.internet.tcp`` for STARTTLS, ``posixbase`` for
``connectSSL``): about 13 MB resident that a daemon speaking no TLS never
uses.  A configuration with no model provider, no ``http_check`` tool, no
connector, no check, no mailbox, no Redis and plain listeners (the embedded
default) speaks none, so ``leave_unloaded`` makes ``import OpenSSL`` fail before the
reactor is imported and Twisted takes its no-TLS path.

A reload that adds a TLS user calls ``load``: the TLS modules import on
first use, and ``twisted.internet.endpoints`` (which settled its TLS names
at import) is re-executed in place, so ``wrapClientTLS`` and the HTTPS
agent work, for the references taken before too.  What stays without TLS
is what the reactor settled: ``connectSSL``, ``listenSSL`` and STARTTLS on
its TCP transports.  openclaw uses none of them but the mail watch's
STARTTLS, and a first mailbox needs a restart anyway, as does a TLS
listener (``openclaw.reload``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping
from typing import Any

from openclaw.config import Config

#: Listener strports that are not TLS.
PLAIN_LISTENERS = ("tcp:", "tcp6:", "unix:")

#: The module whose import Twisted's reactor tries, falling back to no TLS.
OPENSSL = "OpenSSL"


def tls_users(config: Config) -> tuple[str, ...]:
    """The parts of ``config`` that may open a TLS connection or listener."""
    users = []
    if config.brain.providers or "http_check" in config.brain.tools:
        users.append("brain")
    if config.connectors.enabled():
        users.append("connectors")
    if config.checks:
        users.append("checks")
    if config.mail:
        users.append("mail")
    if config.store.url:
        users.append("store")  # txredisapi imports twisted.internet.ssl, for rediss:// or not
    for section in ("gateway", "web"):
        listen = getattr(config, section).listen  # as given: ``build_config`` has not parsed it yet
        if not (isinstance(listen, str) and listen.startswith(PLAIN_LISTENERS)):
            users.append(f"{section}.listen")
    return tuple(users)


def leave_unloaded(config: Config, modules: MutableMapping[str, Any] = sys.modules) -> bool:
    """Keep pyOpenSSL out of this process if ``config`` needs no TLS and nothing loaded it yet; True if kept out."""
    if tls_users(config) or OPENSSL in modules or "twisted.internet.tcp" in modules:
        return False
    modules[OPENSSL] = None  # the import system's "not here": ``import OpenSSL`` raises ImportError
    return True


def available(modules: MutableMapping[str, Any] = sys.modules) -> bool:
    """Whether this process can speak TLS (it was not kept out at start)."""
    return modules.get(OPENSSL, OPENSSL) is not None


def load(modules: MutableMapping[str, Any] = sys.modules) -> bool:
    """Let the TLS stack in after all (a reload added a TLS user); True if it had been kept out."""
    if available(modules):
        return False
    del modules[OPENSSL]
    endpoints = modules.get("twisted.internet.endpoints")
    if endpoints is not None:
        importlib.reload(endpoints)
    return True
