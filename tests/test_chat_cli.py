"""``openclaw chat``'s loop against a real gateway: lines in, replies out, /quit."""

from __future__ import annotations

import queue

import pytest_twisted
from twisted.internet import defer, reactor, task

from openclaw.chat_cli import ChatSession, cli_client_id
from tests.daemon import RunningDaemon, daemon_config


class ScriptedChat(ChatSession):
    """Lines come from a queue (the reader thread blocks on it); output is captured."""

    def __init__(self, *args, **kwargs) -> None:
        self.lines: queue.Queue = queue.Queue()
        super().__init__(*args, read_line=lambda: self.lines.get(timeout=30), **kwargs)
        self.shown: defer.DeferredQueue = defer.DeferredQueue()

    def show(self, text: str) -> None:
        self.shown.put(text)


@pytest_twisted.inlineCallbacks
def test_a_line_is_sent_and_its_reply_shown_then_quit(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    chat = ScriptedChat(reactor, f"ws://127.0.0.1:{daemon.gateway_port}/", daemon.token, None)
    finished = chat.read_loop()
    chat.lines.put("/help")
    assert (yield chat.shown.get()) == "(this chat: /quit, /exit or Ctrl-D leaves)"
    shown = yield chat.shown.get()
    assert shown.startswith("openclaw: ") and "/status" in shown
    assert chat.session == f"webchat:{cli_client_id()}"
    chat.lines.put("/quit")
    yield finished
    assert chat.done.called
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_an_unreachable_daemon_is_retried_not_fatal(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    port = daemon.gateway_port
    yield daemon.stop()  # nothing listens there now
    chat = ScriptedChat(reactor, f"ws://127.0.0.1:{port}/", "token", None)
    connecting = chat.connect()
    shown = yield chat.shown.get()
    assert shown.startswith("(not connected:") and "retrying in 0.5s" in shown
    chat.done.callback(None)  # leave: the loop stops after its wait
    yield connecting


@defer.inlineCallbacks
def connected(chat: ScriptedChat, within: float = 10.0):
    """Wait (without blocking the reactor) until the chat holds a connection."""
    for _ in range(int(within / 0.01)):
        if chat.client is not None:
            return
        yield task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("the chat did not connect")


@pytest_twisted.inlineCallbacks
def test_the_chat_reconnects_when_the_daemon_restarts(tmp_path) -> None:
    first = RunningDaemon(str(tmp_path))
    port = first.gateway_port
    chat = ScriptedChat(reactor, f"ws://127.0.0.1:{port}/", first.token, None)
    finished = chat.read_loop()
    yield connected(chat)
    yield first.stop()
    assert (yield chat.shown.get()) == "(connection lost; reconnecting)"
    # The same home (same token) on the same port: the client finds it again.
    second = RunningDaemon(str(tmp_path), daemon_config(gateway={"listen": f"tcp:{port}:interface=127.0.0.1"}))
    yield connected(chat)
    while chat.shown.pending:  # retries shown while the daemon was away
        assert chat.shown.pending.pop(0).startswith("(not connected:")
    chat.lines.put("/help")
    assert (yield chat.shown.get()).startswith("(this chat: /quit")
    shown = yield chat.shown.get()
    assert shown.startswith("openclaw: ") and "/status" in shown
    chat.lines.put("/quit")
    yield finished
    yield second.stop()


def test_alerts_and_heartbeats_are_shown_with_their_kind() -> None:
    chat = ScriptedChat(reactor, "ws://127.0.0.1:1/", "token", None)
    chat.on_event("alert", {"kind": "recovery", "check": "web", "message": "web is back up"})
    chat.on_event("heartbeat", {"verdict": "ok"})
    assert [chat.shown.pending.pop(0) for _ in range(2)] == ["[recovery] web is back up", "[heartbeat] ok"]
    chat.on_event("alert", {"kind": "alert", "message": "disk full", "while_away": True, "at": 0})
    shown = chat.shown.pending.pop(0)
    assert shown.startswith("[alert] disk full (while you were away, 19") and shown.endswith(")")
