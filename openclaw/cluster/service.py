"""
The cluster as a service of the tree, on Redis: this instance's
registration, the leases it keeps, the guarded writes made on their behalf,
and the ``cluster`` part of ``/health``.

It has a Redis connection of its own: renewals must not queue behind the
store's traffic (a long export, a burst of messages), or a busy holder
would lose its leases for being busy.
"""

from __future__ import annotations

from typing import Any, Callable

import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks, succeed
from zope.interface import implementer

from openclaw import metrics
from openclaw.cluster import CONNECTOR, SCHEDULER, cluster_status
from openclaw.cluster.instance import InstanceRegistry, new_instance_id
from openclaw.cluster.keeper import LeaseKeeper
from openclaw.cluster.lease import Timing, extras, may_take
from openclaw.cluster.redis_lease import Fenced, RedisLeases
from openclaw.config import ClusterConfig
from openclaw.health import iso
from openclaw.interfaces import ICluster, IStatusSource
from openclaw.status import StatusSource
from openclaw.store.redis import parse_url

@implementer(ICluster, IStatusSource)
class RedisCluster(StatusSource, Service):
    """
    :param url: the store's ``redis://`` URL; ``prefix`` its key prefix.
    """

    status_key = "cluster"
    alone = False

    def __init__(
        self, clock: Any, url: str, prefix: str, config: ClusterConfig, instance_id: str | None = None,
    ) -> None:
        self.clock = clock
        self.url = url
        self.prefix = prefix
        self.timing = Timing.for_ttl(config.lease_ttl)
        self.instance_id = instance_id or new_instance_id()
        self.leases = RedisLeases(None, prefix)
        self.registry = InstanceRegistry(clock, None, prefix, self.instance_id, config.instance_ttl,
                                         holds=self.held, started_at=clock.seconds(), on_listed=self._rebalance)
        self.keepers: dict[str, LeaseKeeper] = {}
        self.started_at = clock.seconds()
        self._redis: Any = None

    # ICluster

    def lease(self, lease_name: str, on_acquired: Callable[[], Any], on_lost: Callable[[], Any]) -> None:
        keeper = self.keepers.get(lease_name)
        if keeper is None:
            keeper = self.keepers[lease_name] = LeaseKeeper(
                self.clock, self.leases, lease_name, self.instance_id, self.timing,
                may_take=self._may_take if lease_name.startswith(CONNECTOR) else (lambda: True))
            if self.running:
                keeper.start()
        keeper.watchers.append((on_acquired, on_lost))
        if keeper.held():
            on_acquired()

    def unlease(self, lease_name: str, on_acquired: Callable[[], Any], on_lost: Callable[[], Any]) -> Deferred:
        keeper = self.keepers.get(lease_name)
        if keeper is None or (on_acquired, on_lost) not in keeper.watchers:
            return succeed(None)
        keeper.watchers.remove((on_acquired, on_lost))
        if keeper.watchers:
            return succeed(None)
        del self.keepers[lease_name]
        return keeper.stop()

    def holds(self, lease_name: str) -> bool:
        keeper = self.keepers.get(lease_name)
        return keeper is not None and keeper.held()

    def held(self) -> list[str]:
        return sorted(name for name, keeper in self.keepers.items() if keeper.held())

    def alive(self, instance_id: str) -> Deferred:
        return self.registry.alive(instance_id)

    def instances(self) -> Deferred:
        return self.registry.instances()

    def guarded_set_state(self, lease_name: str, key: str, value: Any) -> Deferred:
        keeper = self.keepers.get(lease_name)
        if keeper is None or not keeper.held():
            return fail(Fenced(f"lease {lease_name} is not held here; {key} not written"))
        d = self.leases.guarded_set_state(lease_name, keeper.holding.token, key, value)

        def refused(failure: Any) -> Any:
            if failure.check(Fenced):
                metrics.cluster_fenced_writes.labels(lease_name).inc()
                keeper.lose("fenced")
            return failure

        return d.addErrback(refused)

    # Spreading connector leases

    def _connectors(self) -> list[LeaseKeeper]:
        return [k for name, k in self.keepers.items() if name.startswith(CONNECTOR)]

    def _may_take(self) -> bool:
        keepers = self._connectors()
        return may_take(sum(k.held() for k in keepers), len(keepers), self.registry.live)

    def _rebalance(self, _: Any) -> Any:
        """Give back connector leases held over this instance's share, the most recently taken first."""
        held = sorted((k for k in self._connectors() if k.held()), key=lambda k: -(k.holding.token or 0))
        surplus = extras(len(held), len(self._connectors()), self.registry.live)
        return gatherResults([k.release() for k in held[:surplus]])

    # Service

    def startService(self) -> None:
        Service.startService(self)
        host, port, db, user, password = parse_url(self.url)
        self._redis = txredisapi.lazyConnection(host, port, db, reconnect=True, password=password, username=user,
                                                convertNumbers=False, connectTimeout=self.timing.renew_every)
        self.leases.redis = self.registry.redis = self._redis
        self.registry.startService()
        for keeper in self.keepers.values():
            keeper.start()

    @inlineCallbacks
    def stopService(self) -> Any:
        """Release every lease (the guarded work stops first) and the registration, then disconnect."""
        Service.stopService(self)
        yield gatherResults([keeper.stop() for keeper in self.keepers.values()])
        yield self.registry.stopService()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            yield redis.disconnect()

    # Status

    def status(self) -> dict[str, Any]:
        return cluster_status(self.instance_id, self.registry.known, self.held())

    def problems(self) -> list[str]:
        now = self.clock.seconds()
        found = []
        if not self.registry.reachable() and now - self.started_at >= self.registry.ttl / 3:
            error = self.registry.error or "no answer yet"
            found.append(f"cluster: cannot reach Redis to renew this instance ({error}; "
                         f"last renewed {iso(self.registry.renewed_at) or 'never'})")
        grace = self.timing.ttl + self.registry.ttl / 3
        if now - self.started_at >= grace and not self.holds(SCHEDULER) and not any(
                SCHEDULER in i.get("holds", ()) for i in self.registry.known):
            found.append("cluster: no instance holds the scheduler lease (heartbeat, cron and checks are not running)")
        return found

