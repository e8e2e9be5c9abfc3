"""
Admission: whether one more inbound message may be acknowledged now.

An acknowledged message is a promise to answer it, so the daemon takes no
more than it can answer soon: a bound on acknowledged-but-unanswered
messages per session (``lanes.max_queue``) and overall
(``lanes.max_pending``), and on the wait a new message can expect,
estimated from what the pipeline measures as it answers.  The wait bound
is ``lanes.max_wait`` or ``lanes.wait_answers`` answers' time, whichever is
longer: a fast brain under overload keeps its p99 under a second, and a
model that takes seconds per answer still lets a sender queue a few.  Past a bound the sender is told ``busy`` before anything is
recorded, so the ack rate follows the reply rate whatever the offered load.
Pure: the pipeline feeds it its counts and measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Weight of the newest sample in the moving averages.
SMOOTHING = 0.05

SESSION, OVERALL, WAIT = "session", "overall", "wait"


@dataclass(frozen=True)
class Limits:
    max_queue: int
    max_pending: int
    max_wait: float  # seconds; 0: no bound on the estimated wait
    wait_answers: int  # the wait bound is at least this many answers' handling time


@dataclass(frozen=True)
class Load:
    """What is acknowledged and not yet answered, and how fast answers come, as the pipeline measures it."""

    session_pending: int  # of the message's own session (the one being answered included)
    pending: int  # over all sessions
    handling: float  # moving average of seconds from a message's lane turn to its stored reply; 0 before any
    spacing: float  # moving average of seconds between answers while any is pending (1 / throughput); 0 before any
    cluster_wait: float = 0.0  # with several instances: the whole cluster's backlog's wait (openclaw.inbound_backlog)


def estimated_wait(load: Load) -> float:
    """
    Seconds until a new message's reply is stored: its session's messages
    go one at a time (``handling`` each), and everything pending goes out
    one answer per ``spacing`` (Little's law, whatever the concurrency or
    what limits it: the brain, the store or the CPU), and with several
    instances the cluster's backlog may be answered later still.  Nothing
    pending, no wait: a brain slower than ``max_wait`` still gets one
    message at a time.
    """
    return max(load.session_pending * load.handling, load.pending * load.spacing, load.cluster_wait)


def wait_bound(load: Load, limits: Limits) -> float:
    """The longest estimated wait admitted, in seconds; 0: none is bounded."""
    if limits.max_wait <= 0:
        return 0.0
    return max(limits.max_wait, limits.wait_answers * load.handling)


def refusal(load: Load, limits: Limits) -> str | None:
    """``None`` to admit; else which bound refuses: ``session``, ``overall`` or ``wait``."""
    if load.session_pending >= limits.max_queue:
        return SESSION
    if load.pending >= limits.max_pending:
        return OVERALL
    bound = wait_bound(load, limits)
    if bound and estimated_wait(load) > bound:
        return WAIT
    return None


def smoothed(average: float, sample: float) -> float:
    """The moving average after one more sample (the first sample is taken as it is)."""
    return sample if average <= 0 else average + SMOOTHING * (sample - average)
