"""
The pure half of the Discord connector: Gateway v10 opcodes and payloads,
what a close code means, when the first heartbeat goes out, which messages
are for us, and the REST rate-limit buckets.  No I/O and no clock: callers
pass the time, so all of it is tested without a network.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

# Gateway opcodes.
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 7, 9, 10, 11

GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
INTENTS = GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT

MESSAGE_LIMIT = 2000
NONCE_LENGTH = 25
# Plain messages and replies; joins, pins, boosts... carry no request.
TEXT_MESSAGE_TYPES = (0, 19)

# What to do after the gateway closes with a code.
TERMINAL, IDENTIFY_AGAIN, RESUME_SESSION = "terminal", "identify", "resume"

TERMINAL_CODES = {
    4004: "Discord rejected the bot token (authentication failed)",
    4010: "Discord rejected the shard (invalid shard)",
    4011: "Discord requires sharding for this bot",
    4012: "Discord rejected the gateway API version",
    4013: "Discord rejected the gateway intents (invalid intents)",
    4014: "Discord refused the Message Content intent: enable it for the bot in the Developer Portal",
}
NEW_SESSION_CODES = (4007, 4009)  # invalid seq, session timed out


def close_action(code: int | None) -> str:
    """``TERMINAL``, ``IDENTIFY_AGAIN`` (the session is gone) or ``RESUME_SESSION``."""
    if code in TERMINAL_CODES:
        return TERMINAL
    if code in NEW_SESSION_CODES:
        return IDENTIFY_AGAIN
    return RESUME_SESSION


def first_heartbeat_delay(interval: float, jitter: float) -> float:
    """Discord asks for the first beat after ``interval * jitter`` so reconnecting bots do not beat in step."""
    return interval * min(max(jitter, 0.0), 1.0)


def frame(op: int, d: Any) -> dict[str, Any]:
    return {"op": op, "d": d}


def identify(token: str) -> dict[str, Any]:
    return frame(IDENTIFY, {
        "token": token, "intents": INTENTS,
        "properties": {"os": "linux", "browser": "openclaw", "device": "openclaw"},
    })


def resume(token: str, session_id: str, seq: int | None) -> dict[str, Any]:
    return frame(RESUME, {"token": token, "session_id": session_id, "seq": seq})


def heartbeat(seq: int | None) -> dict[str, Any]:
    return frame(HEARTBEAT, seq)


def resume_url(resume_gateway_url: str, gateway_url: str) -> str:
    """READY's ``resume_gateway_url`` comes without the version and encoding query: keep ours."""
    resume = urlsplit(resume_gateway_url)
    if resume.query:
        return resume_gateway_url
    ours = urlsplit(gateway_url)
    return urlunsplit((resume.scheme, resume.netloc, resume.path or "/", ours.query, ""))


@dataclass(frozen=True)
class Inbound:
    """A message for us: ``text`` without the mention that addressed it."""

    message_id: str
    channel_id: str
    sender_id: str
    sender_name: str
    text: str


class Malformed(ValueError):
    """A MESSAGE_CREATE lacking what every message has (or content, with the intent on)."""


def _mention(bot_id: str) -> re.Pattern[str]:
    return re.compile(rf"<@!?{re.escape(bot_id)}>\s*")


def inbound(message: Any, bot_id: str) -> Inbound | None:
    """
    The request in a MESSAGE_CREATE, or ``None`` when it is not for us: from a
    bot (ourselves included), not a text message, empty, or in a guild
    channel without mentioning us.  Raises ``Malformed``.
    """
    if not isinstance(message, dict):
        raise Malformed("MESSAGE_CREATE data is not an object")
    author = message.get("author")
    if not isinstance(author, dict) or not isinstance(author.get("id"), str):
        raise Malformed("MESSAGE_CREATE without author id")
    for key in ("id", "channel_id"):
        if not isinstance(message.get(key), str):
            raise Malformed(f"MESSAGE_CREATE without {key}")
    if author.get("bot") or author["id"] == bot_id or message.get("type", 0) not in TEXT_MESSAGE_TYPES:
        return None
    content = message.get("content")
    if not isinstance(content, str):
        raise Malformed("MESSAGE_CREATE without content (is the Message Content intent enabled?)")
    if message.get("guild_id") is not None:
        mentions = message.get("mentions")
        mentioned = isinstance(mentions, list) and any(
            isinstance(m, dict) and m.get("id") == bot_id for m in mentions)
        if not mentioned and not _mention(bot_id).search(content):
            return None
    text = _mention(bot_id).sub("", content).strip()
    if not text:
        return None
    name = author.get("global_name") or author.get("username") or ""
    return Inbound(message["id"], message["channel_id"], author["id"], str(name), text)


def nonce(dedupe_key: str, part: int) -> str:
    """
    A nonce Discord checks for uniqueness (``enforce_nonce``) so a part
    re-sent after a lost response is not posted twice; at most 25 characters.
    """
    return hashlib.sha256(f"{dedupe_key}\0{part}".encode()).hexdigest()[:NONCE_LENGTH]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


class RateLimits:
    """
    Discord's REST limits: a route maps to a bucket (``X-RateLimit-Bucket``),
    limited per major parameter (the channel); ``Remaining: 0`` closes the
    bucket for ``Reset-After`` seconds, a 429 for ``retry_after``, a global
    429 closes every route.  ``delay`` says how long to wait before a request.
    """

    MAX_TRACKED = 1000

    def __init__(self) -> None:
        self._bucket: dict[str, str] = {}
        self._until: dict[tuple[str, str], float] = {}
        self._global_until = 0.0

    def _key(self, route: str, major: str) -> tuple[str, str]:
        return self._bucket.get(route, route), major

    def delay(self, route: str, major: str, now: float) -> float:
        until = max(self._global_until, self._until.get(self._key(route, major), 0.0))
        return max(0.0, until - now)

    def update(self, route: str, major: str, headers: Mapping[str, str], now: float) -> None:
        """After any response: learn the bucket and close it when exhausted."""
        bucket = headers.get("x-ratelimit-bucket")
        if bucket:
            self._bucket[route] = bucket
        reset_after = _number(headers.get("x-ratelimit-reset-after"))
        if headers.get("x-ratelimit-remaining") == "0" and reset_after is not None:
            self._close(self._key(route, major), now + reset_after, now)

    def limited(self, route: str, major: str, body: Any, headers: Mapping[str, str], now: float) -> float:
        """
        After a 429: close the bucket (or everything, when global) and
        :return: the seconds to wait before retrying.
        """
        self.update(route, major, headers, now)
        wait = _number(body.get("retry_after")) if isinstance(body, dict) else None
        if wait is None:
            wait = _number(headers.get("retry-after"))
        if wait is None:
            wait = 1.0
        if (isinstance(body, dict) and body.get("global") is True) or headers.get("x-ratelimit-global") == "true":
            self._global_until = max(self._global_until, now + wait)
        else:
            self._close(self._key(route, major), now + wait, now)
        return wait

    def _close(self, key: tuple[str, str], until: float, now: float) -> None:
        if len(self._until) >= self.MAX_TRACKED:
            self._until = {k: u for k, u in self._until.items() if u > now}
        self._until[key] = max(self._until.get(key, 0.0), until)
