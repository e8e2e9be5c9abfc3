"""
Hypothesis strategies shared by the test modules: small documented
functions, one place (as Tahoe-LAFS's ``allmydata/test/strategies.py``).
"""

from __future__ import annotations

from hypothesis import strategies as st

from openclaw.proactive.config import ActiveHours


def unit_floats() -> st.SearchStrategy[float]:
    """What a random source returns: a float in [0, 1]."""
    return st.floats(0, 1)


def backoff_settings() -> st.SearchStrategy[dict]:
    """Keyword arguments for ``backoff_policy``: base, cap, growth and jitter share."""
    return st.fixed_dictionaries({
        "initial": st.floats(0, 1e4),
        "cap": st.floats(0, 1e6),
        "factor": st.floats(1, 10),
        "jitter": unit_floats(),
    })


def attempts() -> st.SearchStrategy[int]:
    """An attempt count, far past where any delay reaches its cap."""
    return st.integers(0, 5000)


def intervals() -> st.SearchStrategy[float]:
    """A periodic interval on a ``task.Clock``; ``0`` calls only on request."""
    return st.sampled_from([0.0, 1.0, 2.5, 10.0])


def clock_steps() -> st.SearchStrategy[float]:
    """How far a state machine moves its ``task.Clock`` in one step."""
    return st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0, 30.0])


def active_hours() -> st.SearchStrategy[ActiveHours | None]:
    """A heartbeat window: none, a day window, one across midnight, or all day (start == end)."""
    clock_time = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))
    return st.none() | st.builds(ActiveHours, clock_time, clock_time)
