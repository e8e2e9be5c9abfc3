"""
Several real daemons on one real Redis, for the end-to-end cluster tests:
each a ``twistd openclaw`` process with its own home and ports, a
Telegram connector on the local fake Bot API, a cron job every minute and
one every ten seconds, the heartbeat every few seconds and short lease
TTLs, so a takeover takes seconds.  ``MessageStream`` sends webchat and
Telegram messages to all of them and records what was acknowledged and
answered.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests import wsclient
from tests.llm_servers import Canned, FakeLLM, openai_text
from tests.process import HomeDaemon, RedisServer
from tests.telegram_server import TOKEN as BOT_TOKEN
from tests.telegram_server import BotAPI, text_update

GATEWAY_TOKEN = "cluster-test-token-0123456789"
PREFIX = "e2e:"
#: Lease and instance TTL: a dead holder's work moves within this (plus a renew period).  Not a
#: whole number of seconds, so the renew ticks (every third of it) drift against cron's whole seconds.
TTL = 3.6
HEARTBEAT_EVERY = 5.0
#: Seconds the model takes over each answer.
THINKING = 1.0
#: Webchat sessions per client: each one's messages come further apart than THINKING (no backlog).
SESSIONS_PER_CLIENT = 4
#: Telegram chats of the stream: message n comes from chat FIRST_CHAT + n.
FIRST_CHAT = 5000

CONFIG = """\
gateway: {{listen: "tcp:0:interface=127.0.0.1", token: "{gateway_token}"}}
web: {{listen: "tcp:0:interface=127.0.0.1"}}
store: {{url: "redis://127.0.0.1:{redis_port}/0", prefix: "{prefix}", history: 5000}}
cluster: {{lease_ttl: {ttl}s, instance_ttl: {ttl}s}}
lanes: {{max_queue: 10000}}
heartbeat: {{every: {heartbeat}s, target: "webchat:owner"}}
brain:
  providers: [{{kind: openai, model: slow, base_url: "{model_url}", api_key: sk-test-0123456789abcdef,
               timeout: 30s, max_retries: 0}}]
connectors:
  telegram: {{enabled: true, token: "{bot_token}", api_url: "{api_url}", allow_from: ["*"], poll_timeout: 0.5,
              rate_per_minute: 0}}
cron:
  - {{name: every-minute, schedule: "* * * * *", action: message, text: "minute", target: "webchat:cron"}}
  - {{name: every-10s, schedule: "* * * * * */10", action: message, text: "ten seconds", target: "webchat:cron"}}
"""


def cluster_config(redis_port: int, api: BotAPI, model: FakeLLM) -> str:
    return CONFIG.format(gateway_token=GATEWAY_TOKEN, redis_port=redis_port, prefix=PREFIX, ttl=f"{TTL:g}",
                         heartbeat=f"{HEARTBEAT_EVERY:g}", bot_token=BOT_TOKEN, api_url=api.url, model_url=model.url)


def slow_model() -> FakeLLM:
    """A model that takes ``THINKING`` seconds over every answer, so a killed instance leaves messages mid-way."""
    model = FakeLLM().start()
    model.default = Canned(body=openai_text("an answer").body, delay=THINKING)
    return model


class Cluster:
    """
    ``n`` daemons on ``redis``, started together; every one is killed in
    ``stop`` (teardown).  ``redis_ports`` gives a daemon another port to reach
    Redis on (a ``Partition`` in between).
    """

    def __init__(self, tmp_path: Any, redis: RedisServer, api: BotAPI, n: int = 3,
                 redis_ports: dict[int, int] | None = None) -> None:
        self.redis = redis
        self.model = slow_model()
        self.daemons: list[HomeDaemon] = []
        for i in range(n):
            home = os.path.join(str(tmp_path), f"home-{i}")
            os.makedirs(home, mode=0o700)
            with open(os.path.join(home, "openclaw.yaml"), "w", encoding="utf-8") as f:
                f.write(cluster_config((redis_ports or {}).get(i, redis.port), api, self.model))
            self.daemons.append(HomeDaemon(tmp_path, home))

    def start(self, daemons: list[HomeDaemon] | None = None) -> None:
        """All at once (as three machines booting would), then each one's READY=1."""
        daemons = self.daemons if daemons is None else daemons
        for daemon in daemons:
            daemon.start(wait=None)
        for daemon in daemons:
            daemon.notify.until("READY=1")

    def stop(self) -> defer.Deferred:
        for daemon in self.daemons:
            daemon.ensure_dead()
        return self.model.stop()

    def running(self) -> list[HomeDaemon]:
        return [d for d in self.daemons if d.process is not None and d.process.poll() is None]

    def by_instance(self, instance_id: str) -> HomeDaemon | None:
        """The daemon an instance id (``<host>:<pid>:<suffix>``) names."""
        pid = int(instance_id.split(":")[-2])
        return next((d for d in self.daemons if d.process is not None and d.pid == pid), None)

    def renewed_at(self, lease: str) -> float:
        """When Redis last applied an acquire or renew of ``lease`` (wall clock), from its remaining TTL."""
        remaining = int(self.redis.cli("PTTL", f"{PREFIX}lease:{lease}"))
        return time.time() - (TTL * 1000 - remaining) / 1000

    def journal(self, kind: str) -> list[tuple[float, dict]]:
        """The store's journal of ``kind`` (every instance writes the one in Redis): (timestamp, record), oldest first."""
        lines = self.redis.cli("ZRANGEBYSCORE", f"{PREFIX}journal:{kind}", "-inf", "+inf", "WITHSCORES").splitlines()
        return [(float(score), json.loads(member.split(":", 1)[1])) for member, score in zip(lines[::2], lines[1::2])]



class _Side(protocol.Protocol):
    """One end of a ``Partition`` connection: what it receives goes to ``peer``, or waits while held."""

    def __init__(self, partition: Partition) -> None:
        self.partition = partition
        self.peer: _Side | None = None
        self.waiting: list[bytes] = []

    def _open(self) -> bool:
        return self.peer is not None and self.peer.transport is not None

    def dataReceived(self, data: bytes) -> None:
        self.waiting.append(data)
        if not self.partition.held:
            self.flush()

    def flush(self) -> None:
        if self._open() and self.waiting:
            data, self.waiting = b"".join(self.waiting), []
            self.peer.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        if self._open():
            self.peer.transport.loseConnection()


class Partition:
    """
    A TCP relay to ``port`` on 127.0.0.1 that can hold every byte in both
    directions (``hold``) and deliver them late, in order (``release``): a
    network partition that heals, as seen by the daemon behind it.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.held = False
        self.sides: list[_Side] = []
        factory = protocol.Factory()
        factory.protocol = lambda: self._accepted()
        self.listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    def _accepted(self) -> _Side:
        near = _Side(self)
        far = _Side(self)
        near.peer, far.peer = far, near
        self.sides += [near, far]

        def connected(_: Any) -> None:
            near.flush()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.target)
        endpoint.connect(protocol.Factory.forProtocol(lambda: far)).addCallback(connected)
        return near

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        for side in self.sides:
            side.flush()

    def close(self) -> defer.Deferred:
        for side in self.sides:
            if side.transport is not None:
                side.transport.abortConnection()
        return defer.maybeDeferred(self.listening.stopListening)


def log_records(daemon: HomeDaemon, message_type: str) -> list[dict]:
    """``daemon``'s log records (``<home>/logs/combined.log``) of ``message_type``."""
    with open(os.path.join(daemon.home, "logs", "combined.log"), "rb") as f:
        records = [json.loads(line) for line in f.read().splitlines()]
    return [r for r in records if r.get("message_type") == message_type]


def sample(page: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on a ``/metrics`` page whose labels include ``labels``."""
    return sum(s.value for family in text_string_to_metric_families(page) for s in family.samples
               if s.name == name and labels.items() <= s.labels.items())


@defer.inlineCallbacks
def cluster_status(daemon: HomeDaemon) -> Any:
    """``daemon``'s answer to ``cluster.status``."""
    client = yield wsclient.connect(daemon.gateway_port, GATEWAY_TOKEN)
    try:
        reply = yield client.request("cluster.status")
    finally:
        yield client.close()
    assert reply["ok"], reply
    return reply["payload"]


@defer.inlineCallbacks
def holders(daemon: HomeDaemon) -> Any:
    """
    ``{lease name: the instance id holding it}`` as ``daemon``'s
    ``cluster.status`` reports the cluster: the others' as their instance
    keys say (rewritten every third of the TTL), its own as it knows them.
    """
    status = yield cluster_status(daemon)
    held = {lease: instance["id"] for instance in status["instances"] for lease in instance["holds"]
            if instance["id"] != status["instance_id"]}
    held.update({lease: status["instance_id"] for lease in status["holds"]})
    return held


class MessageStream:
    """
    Webchat messages from one client per daemon (each to a few sessions in
    turn) and Telegram updates from a chat each, one of each every
    ``every`` seconds while running.  ``acked`` maps each
    acknowledged webchat event id to its session; ``pushed`` lists the
    Telegram chats written to.  A client whose daemon dies stops sending.
    """

    def __init__(self, cluster: Cluster, api: BotAPI, every: float = 0.25) -> None:
        self.cluster, self.api, self.every = cluster, api, every
        self.clients: list[Any] = []
        self.acked: dict[str, str] = {}
        self.refused: Counter[str] = Counter()
        self.pushes: Counter[str] = Counter()  # chat.reply frames per reply_to, over every connection
        self.pushed: list[int] = []
        self.sent = 0
        self.missing: dict[str, list] = {}
        self._loop = task.LoopingCall(self._tick)
        self._reading: list[defer.Deferred] = []

    @defer.inlineCallbacks
    def start(self) -> Any:
        for n, daemon in enumerate(self.cluster.daemons):
            client = yield wsclient.connect(daemon.gateway_port, None)
            reply = yield client.request("connect", {"token": GATEWAY_TOKEN, "client": f"c{n}"})
            assert reply["ok"], reply
            client.session = reply["payload"]["session"]
            client.requests = {}
            client.alive = True
            self.clients.append(client)
            self._reading.append(self._read(client))
        self._loop.start(self.every, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sessions(self) -> list[str]:
        return [f"{c.session}-{n}" for c in self.clients for n in range(SESSIONS_PER_CLIENT)]

    def _tick(self) -> None:
        self.sent += 1
        chat = FIRST_CHAT + self.sent
        self.api.push(text_update(chat, f"telegram {self.sent}"))
        self.pushed.append(chat)
        live = [c for c in self.clients if c.alive]
        if live:
            client = live[self.sent % len(live)]
            session = f"{client.session}-{self.sent % SESSIONS_PER_CLIENT}"
            rid = client.send("chat.send", {"text": f"webchat {self.sent}", "client_msg_id": f"m{self.sent}",
                                            "session": session})
            client.requests[rid] = self.sent

    @defer.inlineCallbacks
    def _read(self, client: Any) -> Any:
        while True:
            try:
                frame = yield client.next()
            except ConnectionError:
                client.alive = False
                return
            if frame.get("type") == "event":
                if frame["event"] == "chat.reply":
                    self.pushes[frame["payload"]["reply_to"]] += 1
            elif client.requests.pop(frame.get("id"), None) is not None:
                if frame["ok"]:
                    self.acked[frame["payload"]["event_id"]] = frame["payload"]["session"]
                else:
                    self.refused[frame["error"]["code"]] += 1

    @defer.inlineCallbacks
    def replies(self) -> Any:
        """Assistant replies per event id they answer, from ``chat.history`` on a running daemon."""
        client = yield wsclient.connect(self.cluster.running()[0].gateway_port, GATEWAY_TOKEN)
        counts: Counter[str] = Counter()
        try:
            for session in self.sessions():
                reply = yield client.request("chat.history", {"session": session, "limit": 500})
                assert reply["ok"], reply
                counts.update(m["event_id"] for m in reply["payload"]["messages"] if m["role"] == "assistant")
        finally:
            yield client.close()
        return counts

    def telegram_replies(self) -> Counter[int]:
        """``sendMessage`` calls per chat of the stream."""
        return Counter(m["chat_id"] for m in self.api.sent if m["chat_id"] >= FIRST_CHAT)

    @defer.inlineCallbacks
    def unanswered(self) -> Any:
        """What has no reply yet: acknowledged webchat event ids, Telegram chats."""
        replies, sent = (yield self.replies()), self.telegram_replies()
        return {"webchat": [e for e in self.acked if not replies[e]], "telegram": [c for c in self.pushed if not sent[c]]}

    @defer.inlineCallbacks
    def all_answered(self) -> Any:
        missing = yield self.unanswered()
        self.missing = missing
        return not any(missing.values())

    @defer.inlineCallbacks
    def close(self) -> Any:
        self.stop()
        for client in self.clients:
            if client.alive:
                client.protocol.sendClose(1000)
        yield defer.DeferredList(self._reading)


def after(seconds: float) -> defer.Deferred:
    """Fires ``seconds`` from now: pacing a scenario (a stream runs meanwhile), not waiting for an event."""
    return task.deferLater(reactor, seconds, lambda: None)
