"""
How long to wait before trying again: one policy for the connectors'
reconnects, the outbox's retries, the mail watch, the model clients and
``openclaw chat``, and the ``Retry-After`` a server may ask for instead.

``backoff_policy`` has the shape of Twisted's ``backoffPolicy(initialDelay,
maxDelay, factor, jitter)`` (``twisted/application/_client_service.py``): it
returns a plain function from the attempt count to a delay, so a policy is
tested by itself and a caller only counts its attempts.  Unlike Twisted's,
the jitter takes a random share *off* the step rather than adding seconds
on top, so ``cap`` is the longest wait there is.
"""

from __future__ import annotations

import math
import random
from typing import Callable

Policy = Callable[[int], float]
"""The attempt count (0 before the first retry) -> seconds to wait."""


def backoff_policy(
    initial: float = 1.0, cap: float = 60.0, factor: float = 2.0, jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> Policy:
    """
    Exponential backoff: the step is ``initial * factor ** attempt``, at most
    ``cap``; the wait is a random point between ``(1 - jitter)`` of the step
    and the whole step, so waits still grow while many clients that failed
    together do not retry in step.  ``jitter=0.5`` is "equal jitter" (half
    the step fixed, half random); ``0`` is no jitter.

    :param rand: the random source, returning a number in [0, 1] (others
        are clamped); 1 gives the whole step.  Tests pass a constant.
    """
    if not (initial >= 0 and cap >= 0 and factor >= 1 and 0 <= jitter <= 1):
        raise ValueError(f"backoff_policy({initial!r}, {cap!r}, {factor!r}, {jitter!r}): "
                         "need initial >= 0, cap >= 0, factor >= 1, 0 <= jitter <= 1")

    def policy(attempt: int) -> float:
        try:
            step = min(cap, initial * factor ** min(max(attempt, 0), 1024))
        except OverflowError:
            step = cap
        if not jitter:
            return step
        share = rand()
        if not 0.0 <= share <= 1.0:  # out of range, or NaN: the nearest end (NaN: none of the step)
            share = 1.0 if share > 1.0 else 0.0
        return step * (1 - jitter + jitter * share)

    return policy


def retry_after(value: str | None) -> float | None:
    """
    The delay a ``Retry-After`` header asks for, in seconds, or ``None``
    when absent or not a number of seconds (HTTP dates fall back to backoff).
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
