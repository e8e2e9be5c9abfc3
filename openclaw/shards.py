"""
Inbound events on Redis Streams: which shards this instance holds, and
reading their streams into the pipeline (docs/storage.md, "Redis: streams,
consumer groups, reclaim").

Sessions hash onto ``SHARDS`` streams.  Each shard has a lease
(``shard:<n>``, the cluster's lease scripts and decisions); only its holder
reads the stream, in order, with ``XREADGROUP`` in group ``openclaw`` as
consumer ``<instance id>``, so one instance at a time answers a session, in
order, whichever instance received the message.  A new holder first claims
every entry still pending in the shard's group (the previous holder died,
stepped down or gave the shard back) and answers those before new ones.
Each reply carries the fencing token the event was read under, and the
store's completion script refuses a token older than the shard's latest:
a holder that was paused past its lease cannot answer an event twice.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Collection
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from zope.interface import implementer

from openclaw import metrics
from openclaw.inbound_backlog import BacklogWatch
from openclaw.cluster.lease import LOST, Holding, Timing, share
from openclaw.cluster.redis_lease import parse_holder
from openclaw.eliotutil import log, message_type, typed
from openclaw.events import Event
from openclaw.interfaces import IDrainable, IStatusSource
from openclaw.periodic import PeriodicService
from openclaw.status import StatusSource

#: Sessions hash onto this many inbound streams.  Fixed: every instance must
#: agree on it, and a session must keep its stream (docs/storage.md).
SHARDS = 16
GROUP = "openclaw"

SHARD = typed("shard", [int], "the inbound stream shard")
TOKEN = typed("token", [int], "the shard lease's fencing token")
SHARD_ACQUIRED = message_type("openclaw:shards:acquired", [
    SHARD, TOKEN, typed("reclaimed", [int], "entries left pending by earlier holders, answered first"),
], "this instance took a shard: it reads the shard's stream from now on")
SHARD_RELEASED = message_type("openclaw:shards:released", [SHARD],
                              "this instance gave a shard back (its share shrank, or it stops)")
SHARD_LOST = message_type("openclaw:shards:lost", [SHARD, typed("why", [str], "renew refused, or not renewed in time")],
                          "this instance lost a shard's lease: another instance answers its events", "warn")
SHARD_READ_FAILED = message_type("openclaw:shards:read-failed", [typed("error", [str], "the store's error")],
                                 "reading the shards' streams failed; retried in a second", "warn")
INBOUND_FENCED = message_type("openclaw:store:fenced", [
    typed("event_id", [str], "the inbound event"), typed("token", [str], "the stale shard lease token"),
], "a reply was refused: the event's shard passed to another instance, which answers it instead", "warn")


def shard_of(session_id: str, shards: int = SHARDS) -> int:
    """The shard (inbound stream) of a session: the same on every instance and every run."""
    return zlib.crc32(session_id.encode()) % shards


def lease_name(shard: int) -> str:
    return f"shard:{shard}"


def plan(held: Collection[int], leaving: Collection[int], busy: Collection[int], shards: int,
         live: int) -> tuple[int, list[int]]:
    """
    One tick's decision: how many more shards to try to acquire, and which
    held ones to start giving back (stop reading, release once none is in
    flight), so that each of ``live`` instances holds at most its share.
    Idle shards (not in ``busy``) are given back first.

    :return: ``(room, give)``
    """
    want = share(shards, live)
    staying = [s for s in held if s not in leaving]
    give = sorted(staying, key=lambda s: (s in busy, -s))[:max(0, len(staying) - want)]
    return max(0, want - len(staying)), give


def off_share(held: int, leaving: int, shards: int, live: int) -> bool:
    """Whether an instance holding ``held`` shards (``leaving`` of them being given back) should tick now."""
    return leaving > 0 or held != share(shards, live)


def gone_here(instance_id: str, host: str, running: Callable[[int], bool]) -> bool:
    """
    Whether ``instance_id`` (``<host>:<pid>:<hex>``) is of this host and its
    process is gone: a daemon that crashed and was started again here need
    not wait out its predecessor's leases, nor count it as alive.
    Anything else waits for the TTL.
    """
    parts = instance_id.split(":")
    return len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not running(int(parts[1]))


def dead_here(holder: str | None, host: str, running: Callable[[int], bool]) -> bool:
    """Whether a lease value (``<instance id>:<token>``) names an instance ``gone_here``."""
    parsed = parse_holder(holder)
    return parsed is not None and gone_here(parsed[0], host, running)


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def candidates(free: Collection[int], instance_id: str, shards: int) -> list[int]:
    """Free shards in the order this instance tries them: from its own starting point, so instances rarely race."""
    start = zlib.crc32(instance_id.encode()) % shards
    return sorted(free, key=lambda s: (s - start) % shards)


@implementer(IDrainable, IStatusSource)
class ShardConsumer(StatusSource, Service):
    """
    Holds shard leases (renewed every third of ``timing.ttl``) and feeds
    the held shards' stream entries to ``pipeline.take`` in order.

    :param store: the ``RedisStore`` (not its guard: the stream calls are
        not ``IStore``).
    :param leases: the cluster's lease scripts (``RedisLeases``).
    :param instances: the ids of the instances alive now (a Deferred): each
        holds at most ``ceil(shards / live instances)`` shards.
    :param alive: whether an instance's registration key exists (a Deferred).
    """

    def __init__(
        self, clock: Any, store: Any, leases: Callable[[], Any], pipeline: Any, instance_id: str,
        timing: Timing, instances: Callable[[], Deferred] = lambda: succeed([]),
        shards: int = SHARDS, batch: int = 200, max_inflight: int = 2000, block: float = 1.0,
        running_pid: Callable[[int], bool] = pid_running, look_every: float = 1.0,
        alive: Callable[[str], Deferred] = lambda instance_id: succeed(True),
    ) -> None:
        self.running_pid = running_pid
        self.alive = alive
        self._unregistered: dict[int, str] = {}  # shard -> lease value whose instance had no key at the last tick
        self.clock = clock
        self.store = store
        self._leases = leases
        self.pipeline = pipeline
        self.instance_id = instance_id
        self.timing = timing
        self.instances = instances
        self.shards = shards
        self.batch = batch
        self.max_inflight = max_inflight
        #: A read blocks for less than half the lease's margin, so it has
        #: ended before the lease could pass to another instance.
        self.block = min(block, timing.margin / 2)
        self.held: dict[int, Holding] = {}
        self.leaving: set[int] = set()
        self.inflight: dict[str, int] = {}  # event id -> shard
        self.refusing = False
        self.ready: Deferred = Deferred()
        self.loop = PeriodicService(clock, timing.renew_every, self.tick, name="shards", first=0)
        #: Between ticks, a look every ``look_every`` seconds at whether this
        #: instance holds its share: an instance that came or went (or a
        #: shard given back) moves shards within a second, not a renew period.
        self.look = PeriodicService(clock, min(look_every, timing.renew_every), self._look, name="shards-share")
        self._wakeup: Deferred | None = None
        self._reading: Deferred | None = None

    def startService(self) -> None:
        Service.startService(self)
        self.refusing = False
        #: Fires after the first tick: the daemon is ready (READY=1) once
        #: this instance took its share, so a restart answers what it left at once.
        self.ready = Deferred()
        self.loop.startService()
        self.look.startService()
        self._reading = self._read_loop()

    # Leases

    def tick(self) -> Deferred:
        """Renew what is held, give back what is over the share, take free shards up to it."""
        d = self._tick()

        def ticked(result: Any) -> Any:
            if not self.ready.called:
                self.ready.callback(None)
            return result
        return d.addBoth(ticked)

    @inlineCallbacks
    def _tick(self) -> Any:
        if not self.ready.called:
            yield self.store.stream_unstreamed()  # events an older version left received
        leases = self._leases()
        # All at once: a renew that waits behind the others could outlive the trust.
        yield gatherResults([self._renew(leases, shard, holding) for shard, holding in list(self.held.items())])
        yield self._release_idle(leases)
        if self.refusing:
            return
        yield self._sweep()
        holders = yield self.store.redis.mget([leases.lease_key(lease_name(s)) for s in range(self.shards)])
        host = self.instance_id.split(":")[0]
        live = self._live((yield self.instances()))
        room, give = plan(self.held, self.leaving, set(self.inflight.values()), self.shards, live)
        self.leaving.update(give)
        yield self._release_idle(leases)
        dead = yield self._dead_holders(holders, host)
        free = [s for s, h in enumerate(holders) if h is None or s in dead]
        for shard in candidates(free, self.instance_id, self.shards):
            if room <= 0:
                break
            sent = self.clock.seconds()
            token = yield (leases.take_over(lease_name(shard), dead[shard], self.instance_id, self.timing.ttl)
                           if shard in dead else leases.acquire(lease_name(shard), self.instance_id, self.timing.ttl))
            if token is None:
                continue
            room -= 1
            holding = self.held[shard] = Holding(self.timing)
            holding.acquired(token, sent)
            events = yield self.store.claim_shard(shard, self.instance_id)
            metrics.inbound_reclaimed.inc(len(events))
            log(SHARD_ACQUIRED, shard=shard, token=token, reclaimed=len(events))
            for event in events:
                self._take(shard, event)
        metrics.inbound_shards_held.set(len(self.held))
        self._wake()

    @inlineCallbacks
    def _look(self) -> Any:
        """Tick now when this instance holds more or fewer shards than its share, or is giving some back."""
        if self.refusing or self.loop.busy or not self.ready.called:
            return
        try:
            ids = yield self.instances()
        except Exception:
            return  # the store is down: the renew tick tries (and reports) on its own schedule
        if off_share(len(self.held), len(self.leaving), self.shards, self._live(ids)):
            yield self.loop.call_soon()

    def _live(self, ids: list[str]) -> int:
        """How many instances share the shards: the live ids but this host's gone processes, this one included."""
        host = self.instance_id.split(":")[0]
        return len({i for i in ids if not gone_here(i, host, self.running_pid)} | {self.instance_id})

    @inlineCallbacks
    def _dead_holders(self, holders: list[str | None], host: str) -> Any:
        """
        The shards (and lease values) whose holder is gone, to take over
        without waiting out the lease: a process of this host that is no
        longer running, or an instance whose registration key is missing
        at two ticks in a row with the same lease value (one just started
        is registered long before its second tick).
        """
        others = {s: h for s, h in enumerate(holders) if h is not None and s not in self.held}
        dead = {s: h for s, h in others.items() if dead_here(h, host, self.running_pid)}
        owners = {s: parsed[0] for s, h in others.items() if (parsed := parse_holder(h)) is not None}
        ids = sorted(set(owners.values()))
        alive = dict(zip(ids, (yield gatherResults([self.alive(i) for i in ids]))))
        unregistered = {s: others[s] for s, owner in owners.items() if not alive[owner]}
        dead.update({s: h for s, h in unregistered.items() if self._unregistered.get(s) == h})
        self._unregistered = unregistered
        return dead

    @inlineCallbacks
    def _renew(self, leases: Any, shard: int, holding: Holding) -> Any:
        if holding.next_step(self.clock.seconds()) == LOST:
            self._drop(shard, "not renewed in time")
            return
        sent = self.clock.seconds()
        try:
            renewed = yield leases.renew(lease_name(shard), self.instance_id, holding.token, self.timing.ttl)
        except Exception:
            return  # the next tick tries again; the trust left decides when it is lost
        if self.held.get(shard) is holding and not (renewed and holding.renewed(sent, self.clock.seconds())):
            self._drop(shard, "renew refused" if not renewed else "not renewed in time")

    @inlineCallbacks
    def _sweep(self) -> Any:
        """
        Claim the held shards' entries left pending for a whole TTL by some
        other reader (one that read just as it lost the shard): nobody else
        would ever answer them.  Entries in flight here are not run twice.
        """
        for shard in self._readable():
            events = yield self.store.claim_shard(shard, self.instance_id, self.timing.ttl)
            fresh = [e for e in events if e.id not in self.inflight]
            if fresh:
                metrics.inbound_reclaimed.inc(len(fresh))
            for event in events:
                self._take(shard, event)

    @inlineCallbacks
    def _release_idle(self, leases: Any) -> Any:
        busy = set(self.inflight.values())
        for shard in sorted(self.leaving - busy):
            holding = self.held.pop(shard, None)
            self.leaving.discard(shard)
            if holding is not None and holding.token is not None:
                yield leases.release(lease_name(shard), self.instance_id, holding.drop())
                log(SHARD_RELEASED, shard=shard)
        metrics.inbound_shards_held.set(len(self.held))

    def _drop(self, shard: int, why: str) -> None:
        """Lost: events of this shard still in flight finish, but their replies are refused (fenced)."""
        self.held.pop(shard).drop()
        self.leaving.discard(shard)
        metrics.inbound_shards_held.set(len(self.held))
        log(SHARD_LOST, level="warn", shard=shard, why=why)

    status_key = "shards"

    def status(self) -> dict[str, Any]:
        """The part of ``/health``: which inbound shards this instance reads, and how many events are in flight."""
        return {"held": sorted(self.held), "leaving": sorted(self.leaving), "in_flight": len(self.inflight)}

    # Reading

    def _readable(self) -> list[int]:
        now = self.clock.seconds()
        return sorted(s for s, h in self.held.items() if s not in self.leaving and h.held(now))

    @inlineCallbacks
    def _read_loop(self) -> Any:
        while self.running:
            shards = [] if self.refusing else self._readable()
            if not shards or len(self.inflight) >= self.max_inflight:
                self._wakeup = Deferred()
                yield self._wakeup
                continue
            try:
                found = yield self.store.read_shards(self.instance_id, shards, self.batch, self.block)
            except Exception as e:
                if not self.running:
                    return
                log(SHARD_READ_FAILED, level="warn", error=str(e)[:300] or type(e).__name__)
                yield deferLater(self.clock, 1.0, lambda: None)
                continue
            for shard, event in found:
                self._take(shard, event)

    def reads_session(self, session_id: str) -> bool:
        """Whether this instance reads ``session_id``'s shard now (no I/O)."""
        shard = shard_of(session_id, self.shards)
        holding = self.held.get(shard)
        return holding is not None and shard not in self.leaving and holding.held(self.clock.seconds())

    def _take(self, shard: int, event: Event) -> None:
        """
        Hand ``event`` to the pipeline under the shard's current token.  An
        entry of a shard no longer held stays pending in the group: the
        shard's next holder claims it.  An event still in flight here from
        an earlier holding of the shard gets the new token, not a second run.
        """
        holding = self.held.get(shard)
        if holding is None or shard in self.leaving or not holding.held(self.clock.seconds()):
            return
        self.store.fences[event.id] = str(holding.token)
        if event.id in self.inflight:
            self.inflight[event.id] = shard
            return
        self.inflight[event.id] = shard
        self.pipeline.take(event).addBoth(self._handled, event.id)

    def _handled(self, _: Any, event_id: str) -> None:
        self.inflight.pop(event_id, None)
        self._wake()

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.callback(None)

    # Stopping

    def refuse_new(self) -> None:
        """Take no more entries; what is unanswered stays pending for the shard's next holder."""
        self.refusing = True
        self._wake()

    def drain(self) -> Deferred:
        self.refuse_new()
        return succeed(None)

    def hurry(self) -> None:
        pass

    @inlineCallbacks
    def stopService(self) -> Any:
        """Give every shard back, so another instance (or the next start) takes it at once."""
        Service.stopService(self)
        self._wake()
        yield self.look.stopService()
        yield self.loop.stopService()
        self.leaving.update(self.held)
        self.inflight.clear()
        try:
            yield self._release_idle(self._leases())
        except Exception as e:
            log(SHARD_READ_FAILED, level="warn", error=str(e)[:300] or type(e).__name__)


def uses_streams(config: Any) -> bool:
    """Inbound events go through shard streams exactly when the store is Redis."""
    return bool(config.store.url.startswith("redis://"))


def live_ids(cluster: Any) -> Deferred:
    """The ids of the live instances (``ICluster.instances``), as the consumer and the webchat fan-out want them."""
    return cluster.instances().addCallback(lambda found: [i["id"] for i in found])


def shard_children(config: Any, clock: Any, store: Any, cluster: Any, pipeline: Any) -> list[tuple[str, Service]]:
    """The consumer of the shard streams and the backlog watch (``build_service``'s children), none without Redis."""
    if not uses_streams(config):
        return []
    consumer = ShardConsumer(
        clock, store.store, lambda: cluster.leases, pipeline, cluster.instance_id, cluster.timing,
        instances=lambda: live_ids(cluster), alive=cluster.alive)
    pipeline.reads_here = consumer.reads_session
    store.store.claim_as = cluster.instance_id  # outbox rows it takes are claimed (two instances never send one)
    backlog = BacklogWatch(clock, store.store)
    pipeline.cluster_wait = backlog.wait  # admission sees what every instance acknowledged
    return [("shards", consumer), ("inbound-backlog", backlog)]
