"""
Who may talk to openclaw through a connector, and how fast.

A sender passes when it is in the connector's ``allow_from`` (``*`` allows
everyone), or was approved by pairing (kept in the store, so approvals
survive restarts).  An empty list with pairing off refuses everyone: the
secure default.  With pairing on, an unknown sender gets a 6-digit code
valid for 15 minutes which the owner approves with ``openclaw pairing
approve <code>``.  Allowed senders are then rate limited by a token bucket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks

from openclaw.eliotutil import log, message_type, typed

PAIRING_TTL = 15 * 60.0
ALLOW_PREFIX = "allow:"
PAIRING_PREFIX = "pairing:"


CONNECTOR = typed("connector", [str], "the connector's name")
SENDER_ID = typed("sender_id", [str], "the platform's id of the sender")
PAIRING_REQUESTED = message_type("openclaw:pairing:requested", [
    CONNECTOR, SENDER_ID, typed("sender_name", [str], "the sender's display name"),
    typed("code", [str], "the pairing code to approve"), typed("expires_in", [int, float], "seconds it stays valid"),
], "an unknown sender was given a pairing code", "warn")
PAIRING_APPROVED = message_type("openclaw:pairing:approved", [CONNECTOR, SENDER_ID],
                                "openclaw pairing approve")
PAIRING_DENIED = message_type("openclaw:pairing:denied", [CONNECTOR, SENDER_ID],
                              "a pairing request denied (the console)")
PAIRING_REVOKED = message_type("openclaw:pairing:revoked", [typed("sender", [str], "<connector>:<sender id>")],
                               "openclaw pairing revoke")

NOT_ALLOWED_REPLY = "Sorry, I only talk to people my owner has allowed."
PAIRING_REPLY = (
    "I don't know you yet. If my owner wants to talk with you here, they can run: "
    "openclaw pairing approve {code}  (the code is valid for 15 minutes)"
)
RATE_LIMITED_REPLY = "You're sending messages faster than I can read them; please wait a minute and try again."
# A refused sender hears why at most this often: refusals must not become a
# way to make the bot talk (or hit the platform's rate limits).
REFUSAL_QUIET = 10 * 60.0


class TokenBucket:
    """
    ``capacity`` tokens refilled at ``per_second``; pure: the caller passes
    the time, so tests need no clock.
    """

    def __init__(self, capacity: float, per_second: float, now: float) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; :return: whether there was."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket would be full by ``now`` (it can be forgotten)."""
        return self.tokens + max(0.0, now - self.updated) * self.per_second >= self.capacity


@dataclass(frozen=True)
class Decision:
    """``verdict``: allowed, not_allowed, pairing or rate_limited; ``reply`` to send the sender, if any."""

    verdict: str
    reply: str | None = None


ALLOWED = Decision("allowed")


def allow_key(connector: str, sender_id: str) -> str:
    return f"{ALLOW_PREFIX}{connector}:{sender_id}"


class Access:
    """
    One per connector.  ``store`` holds approvals and pairing codes;
    ``clock`` gives the time.
    """

    MAX_BUCKETS = 10_000

    def __init__(
        self, connector: str, allow_from: tuple[str, ...], pairing: bool, rate_per_minute: int,
        store: Any, clock: Any, rng: random.Random | None = None,
    ) -> None:
        self.connector = connector
        self.allow_from = frozenset(allow_from)
        self.pairing = pairing
        self.rate_per_minute = rate_per_minute
        self.store = store
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self._buckets: dict[str, TokenBucket] = {}
        self._told_to_slow_down: set[str] = set()
        self._refused_at: dict[str, float] = {}

    def reconfigure(self, allow_from: tuple[str, ...], pairing: bool, rate_per_minute: int) -> None:
        """New rules from a reload; approvals and pairing codes in the store stay."""
        self.allow_from = frozenset(allow_from)
        self.pairing = pairing
        if rate_per_minute != self.rate_per_minute:
            self.rate_per_minute = rate_per_minute
            self._buckets.clear()

    @inlineCallbacks
    def decide(self, sender_id: str, chat_id: str, sender_name: str = "") -> Any:
        """:return: a Deferred firing with the ``Decision`` for one inbound message."""
        allowed = "*" in self.allow_from or sender_id in self.allow_from
        if not allowed:
            allowed = (yield self.store.get_state(allow_key(self.connector, sender_id))) is not None
        if not allowed:
            verdict = "pairing" if self.pairing else "not_allowed"
            if not self._may_tell(sender_id):
                return Decision(verdict)
            if not self.pairing:
                return Decision(verdict, NOT_ALLOWED_REPLY)
            code = yield self._pairing_code(sender_id, chat_id, sender_name)
            return Decision(verdict, PAIRING_REPLY.format(code=code))
        return self._rate(sender_id)

    def _may_tell(self, sender_id: str) -> bool:
        """Whether a refused sender may hear why now (once per ``REFUSAL_QUIET``)."""
        now = self.clock.seconds()
        if now - self._refused_at.get(sender_id, float("-inf")) < REFUSAL_QUIET:
            return False
        if len(self._refused_at) >= self.MAX_BUCKETS:
            self._refused_at = {k: t for k, t in self._refused_at.items() if now - t < REFUSAL_QUIET}
        self._refused_at[sender_id] = now
        return True

    def _rate(self, sender_id: str) -> Decision:
        if self.rate_per_minute == 0:
            return ALLOWED
        now = self.clock.seconds()
        bucket = self._buckets.get(sender_id)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[sender_id] = TokenBucket(self.rate_per_minute, self.rate_per_minute / 60.0, now)
        if bucket.take(now):
            self._told_to_slow_down.discard(sender_id)
            return ALLOWED
        # One polite reply per burst, not one per refused message.
        first = sender_id not in self._told_to_slow_down
        self._told_to_slow_down.add(sender_id)
        return Decision("rate_limited", RATE_LIMITED_REPLY if first else None)

    @inlineCallbacks
    def _pairing_code(self, sender_id: str, chat_id: str, sender_name: str) -> Any:
        """The sender's live code, or a new one (logged at warn for the owner)."""
        now = self.clock.seconds()
        for key in (yield self.store.state_keys(PAIRING_PREFIX)):
            entry = yield self.store.get_state(key)
            if entry and entry["connector"] == self.connector and entry["sender_id"] == sender_id \
                    and entry["expires"] > now:
                return key[len(PAIRING_PREFIX):]
        code = f"{self.rng.randrange(10**6):06d}"
        yield self.store.set_state(PAIRING_PREFIX + code, {
            "connector": self.connector, "sender_id": sender_id, "chat_id": chat_id,
            "sender_name": sender_name, "expires": now + PAIRING_TTL, "requested": now,
        })
        log(PAIRING_REQUESTED, level="warn", connector=self.connector, sender_id=sender_id,
            sender_name=sender_name, code=code, expires_in=PAIRING_TTL)
        return code


@inlineCallbacks
def pending_pairings(store: Any, now: float) -> Any:
    """Live pairing requests (expired ones are removed on the way)."""
    found = []
    for key in (yield store.state_keys(PAIRING_PREFIX)):
        entry = yield store.get_state(key)
        if not entry or entry.get("expires", 0) <= now:
            yield store.delete_state(key)
            continue
        found.append({"code": key[len(PAIRING_PREFIX):], **entry})
    return found


@inlineCallbacks
def _take_request(store: Any, code: str, now: float) -> Any:
    """Remove the pairing request ``code``; :return: its entry if it was live, else None."""
    entry = yield store.get_state(PAIRING_PREFIX + code)
    yield store.delete_state(PAIRING_PREFIX + code)
    return entry if entry and entry.get("expires", 0) > now else None


@inlineCallbacks
def approve(store: Any, code: str, now: float) -> Any:
    """
    Approve the sender behind a live ``code``.

    :return: a Deferred firing with the approved ``connector:sender_id``,
        or ``None`` for an unknown or expired code.
    """
    entry = yield _take_request(store, code, now)
    if entry is None:
        return None
    yield store.set_state(allow_key(entry["connector"], entry["sender_id"]), {
        "approved": now, "sender_name": entry.get("sender_name", ""), "chat_id": entry.get("chat_id"),
    })
    log(PAIRING_APPROVED, connector=entry["connector"], sender_id=entry["sender_id"])
    return f"{entry['connector']}:{entry['sender_id']}"


@inlineCallbacks
def deny(store: Any, code: str, now: float) -> Any:
    """Drop a pairing request unapproved; :return: whether a live one had ``code``."""
    entry = yield _take_request(store, code, now)
    if entry is None:
        return False
    log(PAIRING_DENIED, connector=entry["connector"], sender_id=entry["sender_id"])
    return True


@inlineCallbacks
def approved(store: Any) -> Any:
    """Senders approved by pairing: ``[{"sender": "telegram:123", ...}]``."""
    found = []
    for key in (yield store.state_keys(ALLOW_PREFIX)):
        entry = yield store.get_state(key)
        found.append({"sender": key[len(ALLOW_PREFIX):], **(entry or {})})
    return found


@inlineCallbacks
def revoke(store: Any, sender: str) -> Any:
    """Remove an approval (``telegram:123``); :return: whether there was one."""
    key = ALLOW_PREFIX + sender
    existed = (yield store.get_state(key)) is not None
    yield store.delete_state(key)
    if existed:
        log(PAIRING_REVOKED, sender=sender)
    return existed
