"""``openclaw chat``'s loop against a real gateway: lines in, replies out, /quit."""

from __future__ import annotations

import queue

import pytest_twisted
from twisted.internet import defer, reactor

from openclaw.chat_cli import ChatSession, cli_client_id
from tests.daemon import RunningDaemon


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
