"""
The baseline for ``bench/gateway.py``: a bare Autobahn (Twisted) WebSocket
server that echoes every message back unchanged, with Autobahn's default
protocol options.  Nothing else runs in the process: no auth, no JSON, no
metrics, no logging.

    python bench/echo_server.py --port 9000 [--max-seconds 300]

It prints ``listening <port>`` once it accepts connections, stops on SIGTERM
or SIGINT, and stops by itself after ``--max-seconds`` so a forgotten server
never outlives a benchmark run.
"""

from __future__ import annotations

import argparse
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor


class EchoProtocol(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long regardless")
    args = parser.parse_args(argv)

    factory = WebSocketServerFactory()
    factory.protocol = EchoProtocol
    port = reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    reactor.callLater(args.max_seconds, reactor.stop)
    sys.stdout.write(f"listening {port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
