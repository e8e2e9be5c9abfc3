"""
Webchat across instances (Redis store): a reply made on one instance reaches
a client connected to another (docs/storage.md, "Webchat across instances").

Every instance subscribes to ``{prefix}webchat`` and pushes what it hears
to its own connections (``WebchatHub.deliver``).  Who listens where: each
instance puts itself in ``{prefix}webchat:listening:<session>`` (a sorted
set of instance ids scored by expiry on Redis's clock) as soon as a
connection of its subscribes, again every third of ``ttl`` while one does,
and takes itself out when the last one goes.  The outbox's webchat
deliverer drops expired listeners, counts the rest and publishes, in one
script: a row counts as delivered when some instance listens to its session
(or to ``*``) and the publish reached a subscriber; else it waits for a
listener, as on one instance.  A client that missed a push (its connection
dropped meanwhile) reads ``chat.history``.  While no other instance is
alive the hub delivers locally, with no Redis round trip.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint

from openclaw.eliotutil import log, message_type, typed
from openclaw.events import OutboxItem
from openclaw.periodic import PeriodicService
from openclaw.shards import live_ids, uses_streams

WEBCHAT_FANOUT_BAD = message_type("openclaw:webchat:fanout-unreadable", [typed("error", [str], "why")],
                                  "a webchat fan-out message could not be read (skipped)", "warn")

# ARGV: prefix, instance id, ttl ms, sessions...
_LISTEN = """
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
for i = 4, #ARGV do
  local key = ARGV[1]..'webchat:listening:'..ARGV[i]
  redis.call('ZADD', key, expires, ARGV[2])
  redis.call('PEXPIRE', key, ARGV[3])
end
return 1
"""

# ARGV: prefix, instance id, sessions...
_UNLISTEN = """
for i = 3, #ARGV do redis.call('ZREM', ARGV[1]..'webchat:listening:'..ARGV[i], ARGV[2]) end
return 1
"""

# ARGV: prefix, session, message.  Subscribers reached, 0 when nobody listens.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local listeners = 0
for _, session in ipairs({ARGV[2], '*'}) do
  local key = ARGV[1]..'webchat:listening:'..session
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  listeners = listeners + redis.call('ZCARD', key)
end
if listeners == 0 then return 0 end
return redis.call('PUBLISH', ARGV[1]..'webchat', ARGV[3])
"""


def encode(item: OutboxItem) -> str:
    return orjson.dumps({
        "id": item.id, "session_id": item.session_id, "channel": item.channel, "text": item.text,
        "dedupe_key": item.dedupe_key, "reply_to": item.reply_to, "created_at": item.created_at,
    }).decode()


def decode(message: str | bytes) -> OutboxItem:
    return OutboxItem(**orjson.loads(message))


class WebchatFanout(Service):
    """
    The webchat deliverer when several instances share the store.

    :param store: the ``RedisStore`` (its connection runs the scripts).
    :param instances: the ids of the live instances (a Deferred).
    """

    def __init__(self, clock: Any, store: Any, hub: Any, instance_id: str,
                 instances: Callable[[], Deferred], ttl: float = 15.0) -> None:
        self.clock = clock
        self.store = store
        self.hub = hub
        self.instance_id = instance_id
        self.instances = instances
        self.ttl = ttl
        #: No other live instance was seen at the last refresh: deliver locally.
        self.alone = True
        self.loop = PeriodicService(clock, ttl / 3, self.refresh, name="webchat-fanout", first=0)
        self._factory: Any = None
        hub.on_listen = lambda session: self._listen([session])
        hub.on_forget = self._forget

    @property
    def channel(self) -> str:
        return f"{self.store.prefix}webchat"

    def startService(self) -> None:
        import txredisapi  # only with Redis configured

        from openclaw.store.redis import parse_url

        Service.startService(self)
        host, port, db, user, password = parse_url(self.store.url)
        fanout = self

        class Subscriber(txredisapi.SubscriberProtocol):
            @inlineCallbacks
            def connectionMade(self) -> Any:
                yield txredisapi.SubscriberProtocol.connectionMade(self)
                if self.connected:
                    yield self.subscribe(fanout.channel)

            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                fanout.heard(message)

        self._factory = txredisapi.SubscriberFactory(isLazy=True)
        self._factory.protocol = Subscriber
        self._factory.password, self._factory.username, self._factory.dbid = password, user, db
        self._factory.startConnecting(HostnameEndpoint(self.clock, host, port, timeout=self.store.connect_timeout))
        self.loop.startService()

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        yield self.loop.stopService()
        if self._factory is not None:
            factory, self._factory = self._factory, None
            yield factory.disconnect()
        listening = self.hub.listening()
        if listening:
            try:
                yield self.store.redis.eval(_UNLISTEN, [], [self.store.prefix, self.instance_id, *listening])
            except Exception as e:
                log(WEBCHAT_FANOUT_BAD, level="warn", error=str(e)[:300] or type(e).__name__)

    @inlineCallbacks
    def refresh(self) -> Any:
        """Renew this instance's listening entries; learn whether it is alone."""
        ids = yield self.instances()
        self.alone = not (set(ids) - {self.instance_id})
        yield self._listen(self.hub.listening())

    def _listen(self, sessions: list[str]) -> Deferred:
        if not sessions or not self.running:
            return succeed(None)
        args = [self.store.prefix, self.instance_id, str(round(self.ttl * 1000)), *sessions]
        d = self.store.redis.eval(_LISTEN, [], args)
        return d.addErrback(lambda f: None)  # the next refresh writes it again

    def _forget(self, sessions: list[str]) -> None:
        if self.running:
            d = self.store.redis.eval(_UNLISTEN, [], [self.store.prefix, self.instance_id, *sessions])
            d.addErrback(lambda f: None)  # the entries expire with the ttl

    def deliver(self, item: OutboxItem) -> Deferred:
        """
        The outbox's webchat deliverer: True once an instance listening to
        the session heard it.  Alone, a connection here takes it with no
        round trip; one that nobody here took is published all the same,
        since an instance may have started since the last refresh (else its
        clients' replies would wait here, claimed, until the next one).
        """
        if self.alone:
            d = maybeDeferred(self.hub.deliver, item)
            return d.addCallback(lambda pushed: pushed or self._publish(item))
        return self._publish(item)

    def _publish(self, item: OutboxItem) -> Deferred:
        d = self.store.redis.eval(_PUBLISH, [], [self.store.prefix, item.session_id, encode(item)])
        return d.addCallback(lambda reached: int(reached) > 0)

    def heard(self, message: Any) -> None:
        """A delivery published by some instance (this one too): push it to the connections here."""
        try:
            item = decode(message)
        except (TypeError, ValueError) as e:
            log(WEBCHAT_FANOUT_BAD, level="warn", error=str(e)[:300])
            return
        self.hub.deliver(item)


def webchat_fanout(config: Any, clock: Any, store: Any, hub: Any, cluster: Any) -> WebchatFanout | None:
    """The fan-out for ``build_service`` when the store is Redis, else None (the hub delivers alone)."""
    if not uses_streams(config):
        return None
    return WebchatFanout(clock, store.store, hub, cluster.instance_id, lambda: live_ids(cluster),
                         ttl=config.cluster.instance_ttl)
