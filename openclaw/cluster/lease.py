"""
When a lease holder may act, renew, or must step down: pure decisions on
this instance's own clock, apart from the Redis I/O (``redis_lease``).

Redis keeps a lease for ``ttl`` from the moment it applied the acquire or
renew, by its own clock.  A holder cannot know that moment, only that it
came after it *sent* the request; so it counts its lease as valid until
``sent + ttl - margin`` on its own clock and steps down then, unless a
renew sent later has succeeded.  The margin covers the holders' clocks
running at a slightly different rate from Redis's (skew of *offset* is
harmless: only durations on one clock are compared).  A process that was
paused (GC, SIGSTOP) asks ``held(now)`` with the clock after the pause, so it
learns it lost the lease before it acts; what it already sent carries its
fencing token, which Redis refuses once a newer holder took the lease.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: What a lease holder does at a renew tick.
ACQUIRE, RENEW, LOST = "acquire", "renew", "lost"


@dataclass(frozen=True)
class Timing:
    """A lease's TTL, the part of it a holder does not trust, and the renew period."""

    ttl: float
    #: Seconds before Redis's expiry at which the holder has stepped down.
    margin: float

    @classmethod
    def for_ttl(cls, ttl: float) -> Timing:
        """The default margin: a fifth of the TTL (3 s of 15 s), ample for clock-rate skew."""
        return cls(ttl, ttl / 5)

    @property
    def renew_every(self) -> float:
        """A third of the TTL: two renews may fail before the holder steps down."""
        return self.ttl / 3

    def valid_until(self, sent_at: float) -> float:
        """Until when a lease acquired or renewed by a request sent at ``sent_at`` is trusted."""
        return sent_at + self.ttl - self.margin


@dataclass
class Holding:
    """What this instance knows of one lease: the token it holds (if any) and until when it trusts it."""

    timing: Timing
    token: int | None = None
    until: float = -math.inf

    def held(self, now: float) -> bool:
        """Whether the work this lease guards may run now."""
        return self.token is not None and now < self.until

    def next_step(self, now: float) -> str:
        """At a renew tick: ``acquire`` when not held, ``lost`` when the trust ran out, else ``renew``."""
        if self.token is None:
            return ACQUIRE
        return RENEW if self.held(now) else LOST

    def acquired(self, token: int, sent_at: float) -> None:
        self.token = token
        self.until = self.timing.valid_until(sent_at)

    def renewed(self, sent_at: float, now: float) -> bool:
        """
        A renew sent at ``sent_at`` succeeded, answered at ``now``.  A reply
        that comes after the trust ran out does not revive the lease: the
        holder has stepped down (or should have) and its token may be stale.

        :return: whether the lease is still held.
        """
        if not self.held(now):
            return False
        self.until = max(self.until, self.timing.valid_until(sent_at))
        return True

    def drop(self) -> int | None:
        """Forget the lease (lost, refused or released); :return: the token it had."""
        token, self.token, self.until = self.token, None, -math.inf
        return token


def share(accounts: int, live_instances: int) -> int:
    """The most leases of ``accounts`` one of ``live_instances`` should hold: ceil(accounts / live)."""
    return math.ceil(accounts / max(1, live_instances))


def may_take(held: int, accounts: int, live_instances: int) -> bool:
    """Whether an instance holding ``held`` of ``accounts`` leases may try to acquire one more."""
    return held < share(accounts, live_instances)


def extras(held: int, accounts: int, live_instances: int) -> int:
    """How many leases an instance holding ``held`` should give back so others get their share."""
    return max(0, held - share(accounts, live_instances))
