"""
Webchat across instances (openclaw/gateway/fanout.py) on a real Redis: a
reply delivered on one instance is pushed to the client connected to
another; with nobody listening anywhere it waits; alone, the hub delivers
locally; a listener that goes away stops counting.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater

from openclaw.events import OutboxItem
from openclaw.gateway.chat import WebchatHub
from openclaw.gateway.fanout import WebchatFanout
from openclaw.store.redis import RedisStore
from tests.waiting import until


class Conn:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    def send(self, data: Any) -> None:
        self.frames.append(orjson.loads(data))


class Instance:
    def __init__(self, url: str, name: str, ids: list[str]) -> None:
        self.id = f"host:{name}:abcdef"
        self.store = RedisStore(reactor, url, "f:")
        self.hub = WebchatHub(reactor)
        self.fanout = WebchatFanout(reactor, self.store, self.hub, self.id, lambda: succeed(ids))

    async def start(self) -> None:
        await self.store.startService()
        self.fanout.startService()
        await self.fanout.refresh()

    async def subscribed(self, count: int) -> None:
        """Polled until ``count`` instances subscribe to the channel (PUBSUB NUMSUB)."""
        while int((await self.store.redis.execute_command("PUBSUB", "NUMSUB", self.fanout.channel))[1]) < count:
            await deferLater(reactor, 0.01, lambda: None)


def reply(session: str, n: int = 0) -> OutboxItem:
    return OutboxItem(session_id=session, channel="webchat", text=f"answer {n}", dedupe_key=f"reply:e{n}",
                      reply_to=f"e{n}", created_at=1.0)


@pytest_twisted.async_yield_fixture
async def pair(redis_server) -> Any:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    ids = ["host:a:abcdef", "host:b:abcdef"]
    a, b = Instance(url, "a", ids), Instance(url, "b", ids)
    await a.start()
    await b.start()
    await a.subscribed(2)
    yield a, b
    for instance in (a, b):
        await instance.fanout.stopService()
        await instance.store.stopService()


@pytest_twisted.inlineCallbacks
def test_a_reply_delivered_on_one_instance_reaches_the_client_of_another(pair) -> None:
    a, b = pair
    assert not a.fanout.alone
    client = Conn()
    b.hub.subscribe(client, "webchat:x")
    yield b.fanout.refresh()  # its listening entry is written (subscribe wrote it already; idempotent)
    assert (yield a.fanout.deliver(reply("webchat:x", 1))) is True
    yield until(lambda: client.frames, what="the push on b")
    [frame] = client.frames
    assert (frame["event"], frame["payload"]["reply_to"], frame["payload"]["text"]) == ("chat.reply", "e1", "answer 1")
    assert (yield a.fanout.deliver(reply("webchat:nobody", 2))) is False  # waits for a listener


@pytest_twisted.inlineCallbacks
def test_a_listener_to_every_session_counts_and_a_gone_one_stops_counting(pair) -> None:
    a, b = pair
    watcher = Conn()
    b.hub.subscribe(watcher, "*")
    yield b.fanout.refresh()
    assert (yield a.fanout.deliver(reply("webchat:any", 3))) is True
    yield until(lambda: watcher.frames, what="the push to the * listener")
    b.hub.forget(watcher)
    yield b.store.redis.ping()  # the forget's script went first on the same connection
    assert (yield a.fanout.deliver(reply("webchat:any", 4))) is False


@pytest_twisted.inlineCallbacks
def test_alone_the_hub_delivers_locally(redis_server) -> None:
    alone = Instance(f"redis://127.0.0.1:{redis_server.port}/0", "solo", [])
    yield Deferred.fromCoroutine(alone.start())
    try:
        assert alone.fanout.alone
        client = Conn()
        alone.hub.subscribe(client, "webchat:y")
        assert (yield alone.fanout.deliver(reply("webchat:y", 5))) is True
        assert [f["payload"]["reply_to"] for f in client.frames] == ["e5"]
        assert (yield alone.fanout.deliver(reply("webchat:z", 6))) is False
    finally:
        yield alone.fanout.stopService()
        yield alone.store.stopService()


@pytest_twisted.inlineCallbacks
def test_alone_a_reply_nobody_here_takes_reaches_an_instance_started_since(redis_server) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    first = Instance(url, "first", [])  # refreshed before the second started: thinks it is alone
    yield Deferred.fromCoroutine(first.start())
    second = Instance(url, "second", ["host:first:abcdef", "host:second:abcdef"])
    try:
        yield Deferred.fromCoroutine(second.start())
        yield Deferred.fromCoroutine(first.subscribed(2))
        client = Conn()
        second.hub.subscribe(client, "webchat:new")
        yield second.fanout.refresh()
        assert first.fanout.alone
        assert (yield first.fanout.deliver(reply("webchat:new", 7))) is True
        yield until(lambda: client.frames, what="the push on the second instance")
        assert [f["payload"]["reply_to"] for f in client.frames] == ["e7"]
    finally:
        for instance in (first, second):
            yield instance.fanout.stopService()
            yield instance.store.stopService()
