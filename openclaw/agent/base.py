"""
The contracts every brain shares: the request, the reply, the error, and the
``Facts`` the runtime offers about itself.

They live apart from any brain so that the lanes, the tools and the tests can
use them without importing HTTP code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


def empty_usage() -> dict:
    """A zero token count, the usage of brains that call no model."""
    return {"input_tokens": 0, "output_tokens": 0}


@dataclass(frozen=True)
class BrainRequest:
    """
    One inbound message with its session's recent history.

    ``history`` is oldest first, ``{"role": "user"|"assistant", "text": str}``
    dicts, and does not contain the current message (``text``).
    """

    session_id: str
    text: str
    history: list[dict] = field(default_factory=list)
    event_id: str = ""


@dataclass(frozen=True)
class BrainReply:
    """
    What to say back.  An empty ``text`` means: say nothing.  ``provider``
    names the brain that answered (useful behind a failover).
    """

    text: str
    provider: str
    usage: dict = field(default_factory=empty_usage)
    tool_calls: int = 0


class BrainError(Exception):
    """
    A brain could not answer.

    ``retryable`` says whether asking again later (or elsewhere) may work:
    rate limits, overload, timeouts and garbled responses are; a rejected key
    or a bad request is not.  ``status`` is the HTTP status when there was
    one.  The message never contains an API key or the user's text.
    """

    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Facts(Protocol):
    """
    What the running daemon can say about itself, for the rules brain and the
    ``get_status`` tool.  The runtime provides it; tests use a fake.
    """

    def health_summary(self) -> str:
        """One or a few lines: is everything up?"""

    def sessions(self) -> list[str]:
        """The known session ids."""

    def heartbeat(self) -> dict:
        """``{"last": iso-or-None, "next": iso-or-None}``."""

    def checks(self) -> str:
        """The latest results of the proactive checks, as text."""

    def report(self) -> str:
        """A short report of recent activity, as text."""
