"""
Admission: whether one more inbound message may be acknowledged now.

An acknowledged message is a promise to answer it, so the daemon takes no
more than it can answer soon: a bound on acknowledged-but-unanswered
messages per session (``lanes.max_queue``) and overall
(``lanes.max_pending``), and on the wait a new message can expect
(``lanes.max_wait``), estimated from a moving average of how long a message
takes from its lane's turn to its stored reply.  Past a bound the sender is
told ``busy`` before anything is recorded, so the ack rate follows the reply
rate whatever the offered load.  Pure: the pipeline feeds it its counts.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Weight of the newest sample in the moving average of handling time.
SMOOTHING = 0.05

SESSION, OVERALL, WAIT = "session", "overall", "wait"


@dataclass(frozen=True)
class Limits:
    max_queue: int
    max_pending: int
    max_wait: float  # seconds; 0: no bound on the estimated wait
    max_concurrent: int


@dataclass(frozen=True)
class Load:
    """What is acknowledged and not yet answered, as the pipeline counts it."""

    session_pending: int  # of the message's own session (the one being answered included)
    pending: int  # over all sessions
    sessions: int  # sessions with something pending, the new message's included
    handling: float  # moving average of seconds from a lane's turn to the stored reply; 0 before any


def estimated_wait(load: Load, limits: Limits) -> float:
    """
    Seconds a new message waits for its turn: its session's messages go one
    at a time, and all of them share ``min(max_concurrent, sessions)`` slots
    (Little's law: a slot answers one message per ``handling`` seconds).
    Nothing pending, no wait: a brain slower than ``max_wait`` still gets
    one message at a time.
    """
    slots = max(1, min(limits.max_concurrent, load.sessions))
    return load.handling * max(load.session_pending, load.pending / slots)


def refusal(load: Load, limits: Limits) -> str | None:
    """``None`` to admit; else which bound refuses: ``session``, ``overall`` or ``wait``."""
    if load.session_pending >= limits.max_queue:
        return SESSION
    if load.pending >= limits.max_pending:
        return OVERALL
    if limits.max_wait > 0 and estimated_wait(load, limits) > limits.max_wait:
        return WAIT
    return None


def smoothed(average: float, sample: float) -> float:
    """The moving average after one more handling time (the first sample is taken as it is)."""
    return sample if average <= 0 else average + SMOOTHING * (sample - average)
