"""
Crash safety: a daemon receiving a stream of webchat messages is killed with
SIGKILL at random moments, several times.  After the restarts, every message
whose ``chat.send`` was acknowledged has exactly one reply, and its sender
received it.  Runs on SQLite and on Redis.
"""

from __future__ import annotations

import os
import random
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from tests import wsclient
from tests.process import DaemonProcess

TOKEN = "crash-test-token-0123456789"
SESSIONS = [f"webchat:crash-{n}" for n in range(4)]
ROUNDS = 4
PER_ROUND = 60


class Ledger:
    """What the client knows: acknowledged ids and the replies it has seen."""

    def __init__(self) -> None:
        self.acked: dict[str, str] = {}  # client_msg_id -> event_id
        self.session_of: dict[str, str] = {}
        self.replies: dict[str, int] = {}  # event_id -> times received
        self.next = 0

    def new_messages(self, count: int) -> list[str]:
        ids = [f"m{n}" for n in range(self.next, self.next + count)]
        self.next += count
        for n, msg in zip(range(self.next - count, self.next), ids):
            self.session_of[msg] = SESSIONS[n % len(SESSIONS)]
        return ids

    def unacked(self) -> list[str]:
        return [m for m in self.session_of if m not in self.acked]

    def missing_replies(self) -> list[str]:
        return [e for e in self.acked.values() if e not in self.replies]


@defer.inlineCallbacks
def pump(port: int, ledger: Ledger, messages: list[str], catch_up: bool = False):
    """
    Send ``messages`` (resending is safe: same client_msg_id) and record
    acks and pushed replies.  With ``catch_up``, also read each session's
    history, as a client does after reconnecting: a reply pushed just before
    a crash can be lost on the wire (the kernel resets a killed process's
    connections), but never from the store.
    """
    try:
        # The kill may come before the handshake is done: that too is "killed under us".
        client = yield wsclient.connect(port, TOKEN)
        yield client.request("subscribe", {})
        pending = {}
        for msg in messages:
            request_id = client.send("chat.send", {"text": f"/status {msg}", "session": ledger.session_of[msg],
                                                   "client_msg_id": msg})
            pending[request_id] = msg
        reads = 0  # history requests in flight
        read_once = False
        while pending or (catch_up and ledger.missing_replies()):
            if not pending and not reads:
                if read_once:  # polled, not a hot loop: the gateway rate-limits a client (200/s)
                    yield deferLater(reactor, 0.05, lambda: None)
                read_once = True
                for session in SESSIONS:
                    client.send("chat.history", {"session": session, "limit": 500}, request_id=f"h-{uuid.uuid4().hex}")
                reads = len(SESSIONS)
            frame = yield client.next()
            if frame["type"] == "event" and frame["event"] == "chat.reply":
                reply_to = frame["payload"]["reply_to"]
                ledger.replies[reply_to] = ledger.replies.get(reply_to, 0) + 1
            elif frame["type"] == "res" and frame["id"] in pending and frame["ok"]:
                ledger.acked[pending.pop(frame["id"])] = frame["payload"]["event_id"]
            elif frame["type"] == "res" and frame["id"].startswith("h-"):
                reads -= 1
                for message in frame["payload"]["messages"]:
                    if message["role"] == "assistant":
                        ledger.replies.setdefault(message["event_id"], 1)
    except ConnectionError:
        return  # killed under us
    yield client.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
@pytest_twisted.inlineCallbacks
def test_acknowledged_messages_survive_sigkill(tmp_path, backend) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**32)))
    chance = random.Random(seed)
    args: list[str] = []
    if backend == "redis":
        config = tmp_path / "c.yaml"
        prefix = f"openclaw-crash-{uuid.uuid4().hex[:8]}:"
        config.write_text(f'store: {{url: "redis://127.0.0.1:6379/0", prefix: "{prefix}"}}\n')
        args = ["--config", str(config)]
    daemon = DaemonProcess(tmp_path, str(tmp_path / "home"), *args, OPENCLAW_GATEWAY_TOKEN=TOKEN)
    ledger = Ledger()
    cut_short = 0  # rounds the kill interrupted with work in flight
    try:
        for _ in range(ROUNDS):
            daemon.start()
            batch = ledger.unacked() + ledger.new_messages(PER_ROUND)
            done = pump(daemon.gateway, ledger, batch)
            # Kill at a random moment while messages are being recorded and answered.
            yield deferLater(reactor, chance.uniform(0.005, 0.25), lambda: None)
            daemon.kill()
            yield done
            cut_short += bool(ledger.unacked() or ledger.missing_replies())
        # A last, peaceful run: resend what was never acknowledged and collect every reply.
        daemon.start()
        try:
            yield pump(daemon.gateway, ledger, ledger.unacked(), catch_up=True).addTimeout(30, reactor)
        except defer.TimeoutError:
            raise AssertionError(f"seed {seed}: unacked {ledger.unacked()[:5]}, "
                                 f"missing replies {ledger.missing_replies()[:5]} of {len(ledger.acked)}") from None
        history = {}
        client = yield wsclient.connect(daemon.gateway, TOKEN)
        for session in SESSIONS:
            reply = yield client.request("chat.history", {"session": session, "limit": 500})
            history[session] = reply["payload"]["messages"]
        yield client.close()
        code, _ = daemon.stop()
    finally:
        daemon.ensure_dead()
        if backend == "redis":
            os.system(f"redis-cli -h 127.0.0.1 --scan --pattern '{prefix}*' | xargs -r redis-cli -h 127.0.0.1 del >/dev/null")
    assert code == 0
    print(f"seed {seed}: {cut_short} of {ROUNDS} kills interrupted work in flight")
    assert len(ledger.acked) == ROUNDS * PER_ROUND, f"seed {seed}"
    assert not ledger.missing_replies(), f"seed {seed}: acknowledged but never answered"
    for session, messages in history.items():
        answers = [m["event_id"] for m in messages if m["role"] == "assistant"]
        assert len(answers) == len(set(answers)), f"seed {seed}: a message answered twice in {session}"
    answered = {m["event_id"] for ms in history.values() for m in ms if m["role"] == "assistant"}
    assert set(ledger.acked.values()) <= answered, f"seed {seed}"
