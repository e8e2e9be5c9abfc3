"""
The one normalised event every source produces: a chat message from any
platform, a heartbeat, a command.  It crosses the store, the lanes and the
brains unchanged, and round-trips through JSON without loss.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

MESSAGE_RECEIVED = "message.received"
MESSAGE_SENT = "message.sent"
SYSTEM_HEARTBEAT = "system.heartbeat"
SYSTEM_STARTUP = "system.startup"
USER_COMMAND = "user.command"


def new_event_id() -> str:
    """A unique id for an event."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Event:
    """
    ``payload`` keys used so far: ``text``, ``sender_id``, ``sender_name``,
    ``platform_message_id`` (the idempotency key with ``source``),
    ``reply_to``.
    """

    type: str
    source: str
    session_id: str
    timestamp: float
    payload: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)

    @property
    def text(self) -> str:
        text = self.payload.get("text")
        return text if isinstance(text, str) else ""

    @property
    def platform_message_id(self) -> str | None:
        value = self.payload.get("platform_message_id")
        return None if value is None else str(value)

    def to_json(self) -> bytes:
        return orjson.dumps({
            "id": self.id, "type": self.type, "source": self.source,
            "session_id": self.session_id, "timestamp": self.timestamp, "payload": self.payload,
        })

    @classmethod
    def from_json(cls, data: bytes | str) -> "Event":
        raw = orjson.loads(data)
        return cls(
            id=raw["id"], type=raw["type"], source=raw["source"], session_id=raw["session_id"],
            timestamp=raw["timestamp"], payload=raw["payload"],
        )


@dataclass(frozen=True)
class OutboxItem:
    """
    One message to deliver.  ``dedupe_key`` makes enqueueing idempotent
    (``reply:<inbound event id>:<n>`` for replies) and is the idempotency key
    passed to platforms that accept one.
    """

    session_id: str
    channel: str
    text: str
    dedupe_key: str
    reply_to: str | None = None
    id: str = field(default_factory=new_event_id)
    attempts: int = 0
    next_attempt: float = 0.0
    status: str = "pending"
    last_error: str | None = None
    created_at: float = 0.0
