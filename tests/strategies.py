"""
Hypothesis strategies shared by the test modules: small documented
functions, one place (as Tahoe-LAFS's ``allmydata/test/strategies.py``).
"""

from __future__ import annotations

from hypothesis import strategies as st

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
