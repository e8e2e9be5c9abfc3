"""
Instances: each daemon registers ``{prefix}instance:{id}`` with a TTL and
renews it every third of that TTL; an instance is alive exactly while the
key exists (a SIGKILLed one drops out within ``cluster.instance_ttl``).
The ids are also kept in the set ``{prefix}instances``, so listing them
reads a few keys instead of scanning the whole keyspace; ids whose key
expired are dropped from the set as they are listed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks

from openclaw import __version__
from openclaw.eliotutil import log, message_type, typed
from openclaw.periodic import PeriodicService

# KEYS: instance key, instances set; ARGV: id, JSON, ttl ms.
_REGISTER = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: instances set; ARGV: key prefix of instance keys.  The live registrations.
_LIST = """
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local value = redis.call('GET', ARGV[1]..id)
  if value then table.insert(found, value) else redis.call('SREM', KEYS[1], id) end
end
return found
"""

INSTANCE_RENEW_FAILED = message_type("openclaw:cluster:instance-renew-failed", [
    typed("error", [str], "why Redis did not take the registration"),
], "this instance could not renew its registration (others will count it dead after cluster.instance_ttl)", "warn")


def new_instance_id() -> str:
    """``<host>:<pid>:<6 random hex>``: unique across restarts and hosts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class InstanceRegistry(Service):
    """
    Keeps this instance's key alive and reads the others'.

    :param redis: a txredisapi connection.
    :param holds: the lease names this instance holds now (written with each renewal).
    :param on_listed: called with the live instances after each renewal (the spread of connector leases).
    """

    def __init__(
        self, clock: Any, redis: Any, prefix: str, instance_id: str, ttl: float,
        holds: Callable[[], list[str]], started_at: float,
        on_listed: Callable[[list[dict[str, Any]]], Any] = lambda known: None,
    ) -> None:
        self.clock = clock
        self.redis = redis
        self.prefix = prefix
        self.instance_id = instance_id
        self.ttl = ttl
        self.holds = holds
        self.started_at = started_at
        #: When the last renewal succeeded, and why the last one failed (``None`` once one works).
        self.renewed_at: float | None = None
        self.error: str | None = None
        self.on_listed = on_listed
        #: The live instances at the last listing, and how many (this one included).
        self.known: list[dict[str, Any]] = []
        self.live = 1
        self.loop = PeriodicService(clock, ttl / 3, self.renew, name="cluster:instance", first=0)

    def key(self, instance_id: str) -> str:
        return f"{self.prefix}instance:{instance_id}"

    def info(self) -> dict[str, Any]:
        host, pid, _ = self.instance_id.rsplit(":", 2)
        return {"id": self.instance_id, "host": host, "pid": int(pid), "started_at": self.started_at,
                "version": __version__, "holds": sorted(self.holds())}

    def startService(self) -> None:
        Service.startService(self)
        self.loop.startService()

    @inlineCallbacks
    def renew(self) -> Any:
        """Write the registration (and count the live instances); failures are kept, not raised."""
        info = self.info()
        try:
            yield self._set(info)
            self.known = yield self.instances()
            self.live = max(1, len(self.known))
        except Exception as e:
            if self.error is None:
                log(INSTANCE_RENEW_FAILED, level="warn", error=str(e) or type(e).__name__)
            self.error = str(e) or type(e).__name__
        else:
            self.renewed_at, self.error = self.clock.seconds(), None
            yield self.on_listed(self.known)

    def _set(self, info: dict[str, Any]) -> Deferred:
        d = self.redis.eval(_REGISTER, [self.key(self.instance_id), f"{self.prefix}instances"],
                            [self.instance_id, json.dumps(info), str(round(self.ttl * 1000))])
        return d.addTimeout(self.ttl / 3, self.clock)

    def reachable(self) -> bool:
        """Whether a renewal succeeded within the TTL (others still see this instance)."""
        return self.renewed_at is not None and self.clock.seconds() - self.renewed_at < self.ttl

    def alive(self, instance_id: str) -> Deferred:
        return self.redis.exists(self.key(instance_id)).addCallback(bool)

    @inlineCallbacks
    def instances(self) -> Any:
        """The live instances' registrations, by id."""
        values = yield self.redis.eval(_LIST, [f"{self.prefix}instances"], [self.key("")])
        found = []
        for value in values or []:
            try:
                found.append(json.loads(value))
            except ValueError:
                continue  # not ours
        return sorted(found, key=lambda i: i.get("id", ""))

    def stopService(self) -> Deferred:
        """Stop renewing and remove the key, so the others see this instance gone at once."""
        Service.stopService(self)
        d = self.loop.stopService()
        d.addCallback(lambda _: self.redis.delete(self.key(self.instance_id)).addTimeout(self.ttl / 3, self.clock))
        d.addCallback(lambda _: self.redis.srem(f"{self.prefix}instances", self.instance_id))
        return d.addErrback(lambda f: None)  # the key expires by itself
