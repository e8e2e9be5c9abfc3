"""
Leases with fencing on Redis: the Lua scripts and the calls that run them.

``{prefix}lease:<name>`` holds ``<instance id>:<token>`` with a PX TTL;
``{prefix}fence:<name>`` counts acquisitions, so every acquisition gets a
token greater than any before it.  Acquire is ``SET NX PX`` plus ``INCR`` in
one script; renew and release compare the value first (a holder whose lease
expired and was taken cannot renew or delete the new holder's).  A guarded
write carries the writer's token and is refused once a newer one was issued:
that is what stops a paused holder that wakes after its lease passed on.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

# KEYS: lease, fence; ARGV: instance id, ttl ms.  The token, or nil when held.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1]..':'..token, 'PX', ARGV[2])
return token
"""

# KEYS: lease; ARGV: holder value, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lease, fence; ARGV: the dead holder's value, instance id, ttl ms.
# The token, or nil when the lease no longer holds that value.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2]..':'..token, 'PX', ARGV[3])
return token
"""

# KEYS: lease; ARGV: holder value.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: fence, state hash; ARGV: token, field, JSON value.
_GUARDED_SET_STATE = """
if tonumber(ARGV[1]) < tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


class Fenced(Exception):
    """A guarded write carried a token older than the lease's latest: its holder lost the lease."""


def holder_value(instance_id: str, token: int) -> str:
    return f"{instance_id}:{token}"


def parse_holder(value: str | None) -> tuple[str, int] | None:
    """``<instance id>:<token>`` -> (instance id, token); ``None`` for no (or a malformed) holder."""
    if not value:
        return None
    instance_id, _, token = value.rpartition(":")
    return (instance_id, int(token)) if token.isdigit() and instance_id else None


class RedisLeases:
    """
    The lease scripts on one txredisapi connection (``redis``), keys under
    ``prefix``.  Every call returns a Deferred; none retries.
    """

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def lease_key(self, name: str) -> str:
        return f"{self.prefix}lease:{name}"

    def fence_key(self, name: str) -> str:
        return f"{self.prefix}fence:{name}"

    def acquire(self, name: str, instance_id: str, ttl: float) -> Deferred:
        """:return: a Deferred firing with the fencing token, or ``None`` when another holds ``name``."""
        d = self.redis.eval(_ACQUIRE, [self.lease_key(name), self.fence_key(name)], [instance_id, _ms(ttl)])
        return d.addCallback(lambda token: None if token is None else int(token))

    def renew(self, name: str, instance_id: str, token: int, ttl: float) -> Deferred:
        """:return: a Deferred firing with whether ``instance_id`` still held ``name`` with ``token`` (now renewed)."""
        d = self.redis.eval(_RENEW, [self.lease_key(name)], [holder_value(instance_id, token), _ms(ttl)])
        return d.addCallback(lambda n: int(n) == 1)

    def take_over(self, name: str, dead: str, instance_id: str, ttl: float) -> Deferred:
        """
        Acquire ``name`` from a holder known to be dead (its lease value
        ``dead``), without waiting for its TTL.  :return: a Deferred firing
        with the new fencing token, or ``None`` when the value changed meanwhile.
        """
        d = self.redis.eval(_TAKE_OVER, [self.lease_key(name), self.fence_key(name)], [dead, instance_id, _ms(ttl)])
        return d.addCallback(lambda token: None if token is None else int(token))

    def release(self, name: str, instance_id: str, token: int) -> Deferred:
        """:return: a Deferred firing with whether the lease was ours (and is now free)."""
        d = self.redis.eval(_RELEASE, [self.lease_key(name)], [holder_value(instance_id, token)])
        return d.addCallback(lambda n: int(n) == 1)

    def holder(self, name: str) -> Deferred:
        """:return: a Deferred firing with ``(instance id, token)`` of the holder, or ``None``."""
        return self.redis.get(self.lease_key(name)).addCallback(parse_holder)

    def guarded_set_state(self, name: str, token: int, key: str, value: Any) -> Deferred:
        """
        The store's ``set_state`` on behalf of the holder of ``name`` with
        ``token``; fails with ``Fenced`` (nothing written) once a newer token was issued.
        """
        d = self.redis.eval(_GUARDED_SET_STATE, [self.fence_key(name), f"{self.prefix}state"],
                            [str(token), key, json.dumps(value)])

        def written(n: Any) -> None:
            if int(n) != 1:
                raise Fenced(f"lease {name}: token {token} is stale; {key} not written")

        return d.addCallback(written)


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))
