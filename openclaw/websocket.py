"""
Autobahn's Twisted WebSocket classes without its WAMP stack.

``autobahn/twisted/__init__.py`` imports ``autobahn.twisted.wamp`` for the
names it re-exports, which costs about 80 ms and ten modules at every start
for a protocol openclaw never speaks.  The WebSocket module itself needs
none of it, so the package is entered without running that ``__init__``: an
empty package object whose ``__path__`` finds the submodules as usual.  If
something imported ``autobahn.twisted`` already, it is used as it is.
"""

from __future__ import annotations

import importlib.util
import sys

if "autobahn.twisted" not in sys.modules:
    import autobahn

    _spec = importlib.util.find_spec("autobahn.twisted")
    sys.modules["autobahn.twisted"] = autobahn.twisted = importlib.util.module_from_spec(_spec)

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
    connectWS,
)

__all__ = ["WebSocketClientFactory", "WebSocketClientProtocol", "WebSocketServerFactory",
           "WebSocketServerProtocol", "connectWS"]
