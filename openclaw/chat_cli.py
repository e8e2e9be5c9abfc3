"""
``openclaw send`` and ``openclaw chat``: talk to the daemon through the
gateway from a terminal.  ``chat`` reads lines with readline (editing and
history) on a thread, prints replies and pushed alerts as they arrive, and
reconnects with backoff when the daemon restarts.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, Callable

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred

from openclaw.backoff import backoff_policy
from openclaw.client import (
    GatewayClient,
    GatewayError,
    explain,
    gateway_url,
    read_token,
    send_and_wait,
)
from openclaw.config import default_home

RECONNECT = backoff_policy(0.5, 10.0)
"""Waits between attempts to reach the daemon: 0.5 s, 1 s, 2 s, 4 s, 8 s, then every 10 s."""


def cli_client_id() -> str:
    """
    The same client id on every run, so ``openclaw chat`` and ``openclaw
    send`` keep one conversation (``webchat:cli-<user>``) across reconnects.
    """
    return f"cli-{getpass.getuser()}"[:64]


def _target(args: argparse.Namespace) -> tuple[str, str] | None:
    """The gateway URL and token, or None after saying why there is no token."""
    home = os.path.abspath(os.path.expanduser(args.home or default_home()))
    try:
        return gateway_url(args.gateway, home), read_token(home)
    except OSError as e:
        print(f"openclaw: no gateway token ({e.strerror}); is the daemon's home right (--home)?", file=sys.stderr)
        return None
    except ValueError as e:
        print(f"openclaw: {e}", file=sys.stderr)
        return None


def cmd_send(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:
        return 1
    url, token = target
    outcome: dict[str, Any] = {}

    def run(reactor: Any) -> Deferred:
        d = send_and_wait(reactor, url, token, args.text, args.timeout, client=cli_client_id())
        d.addCallback(lambda text: outcome.update(text=text))
        d.addErrback(lambda f: outcome.update(error=explain(f, args.timeout)))
        return d

    _react(run)
    if "error" in outcome:
        print(f"openclaw: {outcome['error']}", file=sys.stderr)
        return 1
    print(outcome["text"])
    return 0


def _react(main: Any) -> None:
    """Run ``main(reactor)`` to completion without ``task.react``'s sys.exit."""
    from twisted.internet import reactor

    def go() -> None:
        d = maybeDeferred(main, reactor)
        d.addErrback(lambda f: print(f"openclaw: {explain(f)}", file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=True)


def when(value: Any) -> str:
    """A timestamp as local ``YYYY-MM-DD HH:MM`` for the terminal."""
    from datetime import datetime

    return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M") if isinstance(value, (int, float)) else str(value)


class ChatSession:
    """The interactive loop: one reader thread, one (re)connecting client."""

    def __init__(
        self, reactor: Any, url: str, token: str, session: str | None,
        read_line: Callable[[], str] = lambda: input("> "),
    ) -> None:
        self.reactor = reactor
        self.url = url
        self.token = token
        self.session = session
        self.read_line = read_line
        self.client: GatewayClient | None = None
        self.done = Deferred()
        self.failed: str | None = None  # a terminal error (a wrong token): no retry helps

    def show(self, text: str) -> None:
        sys.stdout.write(f"\r{text}\n> ")
        sys.stdout.flush()

    def on_event(self, name: str, payload: dict) -> None:
        if name == "chat.reply":
            self.show(f"openclaw: {payload.get('text', '')}")
        elif name == "alert":
            away = f" (while you were away, {when(payload.get('at'))})" if payload.get("while_away") else ""
            self.show(f"[{payload.get('kind', 'alert')}] {payload.get('message', '')}{away}")
        elif name == "heartbeat":
            self.show(f"[heartbeat] {payload.get('verdict', '')} {payload.get('message') or ''}".rstrip())

    @inlineCallbacks
    def connect(self) -> Any:
        attempt = 0
        while not self.done.called:
            client = GatewayClient(self.url, self.token, self.on_event, client=cli_client_id())
            try:
                yield client.connect(self.reactor)
                self.session = self.session or client.session
                yield client.request("subscribe", {"session": self.session})
            except (ConnectionError, GatewayError, OSError) as e:
                if isinstance(e, GatewayError) and e.terminal:
                    self.failed = e.message
                    self.show(f"(cannot chat: {e.message}; check the token, then start again)")
                    return
                delay = RECONNECT(attempt)
                attempt += 1
                self.show(f"(not connected: {e}; retrying in {delay:g}s)")
                yield task.deferLater(self.reactor, delay, lambda: None)
                continue
            self.client = client
            attempt = 0
            client.closed.addCallback(self._lost)
            return

    def _lost(self, code: Any) -> None:
        self.client = None
        if not self.done.called:
            self.show("(connection lost; reconnecting)")
            self.connect()

    @inlineCallbacks
    def read_loop(self) -> Any:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        yield self.connect()
        while self.failed is None:
            try:
                line = yield threads.deferToThread(self.read_line)
            except EOFError:
                break
            line = line.strip()
            if line in ("/quit", "/exit") or self.failed is not None:
                break
            if not line:
                continue
            if line == "/help":  # the daemon lists its commands; leaving is this client's
                self.show("(this chat: /quit, /exit or Ctrl-D leaves)")
            if self.client is None:
                self.show("(not connected yet; message not sent)")
                continue
            params = {"text": line, **({"session": self.session} if self.session else {})}
            try:
                yield self.client.request("chat.send", params)
            except (GatewayError, ConnectionError) as e:
                self.show(f"(not sent: {e})")
        self.done.callback(None)
        if self.client is not None:
            yield self.client.close()


def cmd_chat(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:
        return 1
    url, token = target
    print(f"connected to {url}; /quit or Ctrl-D to leave")
    session: list[ChatSession] = []
    _react(lambda reactor: session.append(ChatSession(reactor, url, token, args.session)) or session[0].read_loop())
    return 1 if session and session[0].failed else 0


def add_chat_parsers(sub: Any) -> None:
    """``send`` and ``chat`` subcommands for the ``openclaw`` command."""
    for name, help_text, func in (
        ("send", "send one message and print the reply", cmd_send),
        ("chat", "an interactive chat with the daemon", cmd_chat),
    ):
        parser = sub.add_parser(name, help=help_text)
        if name == "send":
            parser.add_argument("text", help="the message")
            parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reply")
        else:
            parser.add_argument("--session", help="a webchat:<id> session to join (default: this client's own)")
        parser.add_argument("--gateway", help="ws://host:port/ (default: $OPENCLAW_GATEWAY_URL, else the home's config)")
        parser.add_argument("--home", help="the daemon's home, for its token (default: $OPENCLAW_HOME, else ~/.openclaw)")
        parser.set_defaults(func=func)
