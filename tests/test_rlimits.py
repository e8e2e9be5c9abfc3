"""
raise_nofile in a child process (so this one keeps its limits), and the
pure choice of soft limits to try.
"""

import json
import os
import resource
import subprocess
import sys

from hypothesis import given

from openclaw.system import rlimits
from openclaw.system.rlimits import NOFILE_CAP, nofile_candidates, raise_nofile
from tests.strategies import nofile_limits

CHILD = """
import json, resource, sys
from openclaw.system.rlimits import raise_nofile
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))
result = raise_nofile()
print(json.dumps({"result": result, "now": resource.getrlimit(resource.RLIMIT_NOFILE), "hard": hard}))
"""


def run_child(soft: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def expected_soft(hard: int) -> int:
    return NOFILE_CAP if hard == resource.RLIM_INFINITY else hard


def test_raises_soft_to_hard_in_child() -> None:
    child = run_child(64)
    assert child["result"] == child["now"]
    soft, hard = child["now"]
    assert hard == child["hard"]
    assert soft > 64
    assert soft <= expected_soft(hard)


def test_already_at_hard_is_unchanged() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = NOFILE_CAP
    child = run_child(hard)
    assert child["result"] == [hard, child["hard"]]


def test_falls_back_to_what_the_kernel_allows(monkeypatch) -> None:
    """An unlimited hard limit, and a kernel (like macOS) allowing 24576."""
    state = {"limits": (256, resource.RLIM_INFINITY)}

    def setrlimit(which: int, limits: tuple[int, int]) -> None:
        if limits[0] > 24576:
            raise ValueError("current limit exceeds maximum limit")
        state["limits"] = limits

    monkeypatch.setattr(rlimits.resource, "getrlimit", lambda which: state["limits"])
    monkeypatch.setattr(rlimits.resource, "setrlimit", setrlimit)
    assert raise_nofile() == (NOFILE_CAP // 64, resource.RLIM_INFINITY)
    assert state["limits"] == (16384, resource.RLIM_INFINITY)


def test_nothing_allowed_leaves_limits_alone(monkeypatch) -> None:
    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(rlimits.resource, "getrlimit", lambda which: (256, 4096))
    monkeypatch.setattr(rlimits.resource, "setrlimit", refuse)
    assert raise_nofile() == (256, 4096)


@given(nofile_limits(), nofile_limits())
def test_candidates_descend_from_hard_and_stay_above_soft(soft: int, hard: int) -> None:
    candidates = nofile_candidates(soft, hard)
    assert all(c > soft for c in candidates)
    assert candidates == sorted(set(candidates), reverse=True)
    if hard > soft:
        assert candidates[0] == hard
        assert candidates[-1] // 2 <= soft
    else:
        assert candidates == []


@given(nofile_limits())
def test_unlimited_hard_starts_at_cap(soft: int) -> None:
    candidates = nofile_candidates(soft, resource.RLIM_INFINITY)
    assert candidates[:1] == ([NOFILE_CAP] if soft < NOFILE_CAP else [])


def test_unlimited_soft_has_nothing_to_raise() -> None:
    assert nofile_candidates(resource.RLIM_INFINITY, resource.RLIM_INFINITY) == []
