"""
One-time console links: ``openclaw console`` asks the daemon for a code,
the page trades it (once, within ``LINK_TTL``) for the gateway token, so the
token itself never sits in a URL, a browser's history or a proxy's log.
"""

from __future__ import annotations

import secrets
from typing import Any

#: How long a printed link works.
LINK_TTL = 60.0
#: Codes alive at once; asking for more drops the oldest.
MAX_CODES = 16


class LinkCodes:
    """The live codes, in memory only: a restart forgets them (print a new link)."""

    def __init__(self, clock: Any, ttl: float = LINK_TTL, limit: int = MAX_CODES) -> None:
        self.clock = clock
        self.ttl = ttl
        self.limit = limit
        self._expires: dict[str, float] = {}

    def issue(self) -> tuple[str, float]:
        """A new code and when it expires."""
        self._prune()
        while len(self._expires) >= self.limit:
            del self._expires[next(iter(self._expires))]
        code = secrets.token_urlsafe(24)
        expires = self.clock.seconds() + self.ttl
        self._expires[code] = expires
        return code, expires

    def redeem(self, code: object) -> bool:
        """Whether ``code`` is live; it is used up either way."""
        if not isinstance(code, str):
            return False
        expires = self._expires.pop(code, None)
        return expires is not None and expires > self.clock.seconds()

    def _prune(self) -> None:
        now = self.clock.seconds()
        for code in [c for c, expires in self._expires.items() if expires <= now]:
            del self._expires[code]
