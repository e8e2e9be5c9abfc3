"""
Gateway methods behind ``openclaw pairing``: the daemon owns the store, so
approvals go through it (SQLite or Redis alike).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks

from openclaw.config.connectors import PLATFORMS
from openclaw.connectors import access
from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError


def pairing_methods(store: Any, clock: Any, connectors: Callable[[], Any] | None = None) -> dict[str, Callable]:
    """
    ``pairing.list``, ``pairing.approve``, ``pairing.deny`` and
    ``pairing.revoke``; ``connectors()`` is the running ``connectors``
    section, whose ``allow_from`` lists ``pairing.list`` shows too.
    """

    @inlineCallbacks
    def listing(conn: Any, params: dict) -> Any:
        pending = yield access.pending_pairings(store, clock.seconds())
        approved = yield access.approved(store)
        section = connectors() if connectors is not None else None
        configured = []
        for name in PLATFORMS:
            platform = getattr(section, name, None)
            if platform is not None and platform.enabled:
                configured += [{"connector": name, "sender": sender} for sender in platform.allow_from]
        return {"pending": pending, "approved": approved, "allowed": configured}

    @inlineCallbacks
    def approve(conn: Any, params: dict) -> Any:
        code = _code(params)
        sender = yield access.approve(store, code, clock.seconds())
        if sender is None:
            raise FrameError(frames.INVALID_FIELD, f"no live pairing request has code {code} (codes last 15 minutes)")
        return {"sender": sender}

    def deny(conn: Any, params: dict) -> Deferred:
        return access.deny(store, _code(params), clock.seconds()).addCallback(lambda denied: {"denied": denied})

    def revoke(conn: Any, params: dict) -> Deferred:
        sender = params.get("sender")
        if not isinstance(sender, str) or ":" not in sender:
            raise FrameError(frames.INVALID_FIELD, "field 'sender' must look like telegram:12345")
        return access.revoke(store, sender).addCallback(lambda existed: {"revoked": existed})

    return {"pairing.list": listing, "pairing.approve": approve, "pairing.deny": deny, "pairing.revoke": revoke}


def _code(params: dict) -> str:
    code = params.get("code")
    if not isinstance(code, str) or not (len(code) == 6 and code.isdigit()):
        raise FrameError(frames.INVALID_FIELD, "field 'code' must be the 6-digit pairing code")
    return code
