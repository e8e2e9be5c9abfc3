"""The alert policy: examples, then properties over any sequence of results and times."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from openclaw.config.proactive import CheckConfig
from openclaw.proactive.policy import FLAP_CHANGES, CheckState, step
from tests.strategies import check_configs, check_results


def config(**kw) -> CheckConfig:
    return CheckConfig(name="web", type="tcp", target="h:1", **kw)


def run(results: list[bool], cfg: CheckConfig, every: float = 10.0, state: CheckState | None = None):
    state = state or CheckState()
    decisions = []
    for n, ok in enumerate(results):
        state, decision = step(state, ok, 1000.0 + n * every, cfg)
        decisions.append(decision)
    return state, decisions


def test_alert_on_the_third_failure_in_a_row_then_one_recovery() -> None:
    state, decisions = run([True, False, False, False, False, False, True, True], config(fail_after=3))
    assert decisions == [None, None, None, "alert", None, None, "recovery", None]
    assert not state.alerting and state.incident == "1-1010" and state.down_since == 1010.0


def test_a_streak_shorter_than_fail_after_passes_silently() -> None:
    _, decisions = run([False, False, True, False, False, True], config(fail_after=3))
    assert decisions == [None] * 6


def test_each_incident_gets_its_own_id() -> None:
    state, decisions = run([False, True], config(fail_after=1))
    first = state.incident
    state, more = run([False, True], config(fail_after=1), state=state)
    assert decisions == more == ["alert", "recovery"]
    assert state.incident != first and state.incidents == 2


def test_realert_every_interval_while_down() -> None:
    cfg = config(fail_after=1, realert_every=30.0)
    _, decisions = run([False] * 8 + [True], cfg, every=10.0)
    assert decisions == ["alert", None, None, "realert", None, None, "realert", None, "recovery"]


def test_no_realert_when_realert_every_is_zero() -> None:
    _, decisions = run([False] * 50, config(fail_after=1))
    assert decisions.count("alert") == 1 and "realert" not in decisions


def test_flapping_holds_the_alert_until_it_settles() -> None:
    cfg = config(fail_after=1, flap_window=100.0)
    # One result every 10 s; the 5th change (at 1050) is more than FLAP_CHANGES
    # in 100 s, so the alert is held until the change at 1010 leaves the window.
    _, decisions = run([True] + [False, True] * 2 + [False] * 8, cfg)
    assert decisions == ["alert" if n == 1 else "recovery" if n == 2 else None for n in range(3)] + [
        "alert", "recovery", None, None, None, None, None, None, "alert", None]


def test_flapping_holds_the_recovery_too() -> None:
    cfg = config(fail_after=1, flap_window=100.0)
    state, decisions = run([False, True] * 3 + [True] * 8, cfg)
    assert decisions == ["alert", "recovery", "alert", "recovery", "alert"] + [None] * 6 + ["recovery", None, None]
    assert not state.alerting


def test_state_survives_json() -> None:
    state, _ = run([False, True, False, False], config(fail_after=2, flap_window=60.0))
    assert CheckState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert CheckState.from_json(None) == CheckState() == CheckState.from_json({"failures": "x", "changes": 5})


def test_an_ongoing_incident_is_not_alerted_again_after_a_restart() -> None:
    state, decisions = run([False] * 3, config(fail_after=3))
    assert decisions[-1] == "alert"
    restored = CheckState.from_json(json.loads(json.dumps(state.to_json())))
    _, after = run([False, False, True], config(fail_after=3), state=restored)
    assert after == [None, None, "recovery"]


# Properties

def check_history(cfg: CheckConfig, history: list[tuple[bool, float, str | None, CheckState]]) -> None:
    """Every rule about what a sequence of decisions may look like."""
    incidents: set[str] = set()
    open_incident = None
    last_alert_at = None
    streak = 0
    for ok, now, decision, state in history:
        streak = 0 if ok else streak + 1
        if decision == "alert":
            assert open_incident is None, "a second alert in one incident"
            assert not ok and streak >= cfg.fail_after, "alert before fail_after failures in a row"
            assert state.incident not in incidents, "an incident id used twice"
            incidents.add(state.incident)
            open_incident, last_alert_at = state.incident, now
        elif decision == "realert":
            assert cfg.realert_every > 0 and open_incident == state.incident and not ok
            assert now - last_alert_at >= cfg.realert_every
            last_alert_at = now
        elif decision == "recovery":
            assert ok and open_incident == state.incident, "a recovery without its alert"
            open_incident = None
        assert state.alerting == (open_incident is not None)


@settings(max_examples=300, deadline=None)
@given(check_configs(config), check_results())
def test_any_sequence_keeps_the_incident_rules(cfg: CheckConfig, seq: list[tuple[bool, float]]) -> None:
    state, now, history = CheckState(), 1_700_000_000.0, []
    for ok, dt in seq:
        now += dt
        state, decision = step(state, ok, now, cfg)
        history.append((ok, now, decision, state))
    check_history(cfg, history)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.lists(st.booleans(), max_size=60))
def test_without_flap_suppression_decisions_are_exact(fail_after: int, seq: list[bool]) -> None:
    """Alert exactly on the fail_after-th failure in a row; recover on the first pass after."""
    cfg = config(fail_after=fail_after)
    state, streak, alerting = CheckState(), 0, False
    for n, ok in enumerate(seq):
        state, decision = step(state, ok, float(n), cfg)
        streak = 0 if ok else streak + 1
        expected = None
        if not ok and streak == fail_after and not alerting:
            expected, alerting = "alert", True
        elif ok and alerting:
            expected, alerting = "recovery", False
        assert decision == expected


@settings(max_examples=200, deadline=None)
@given(check_configs(config), check_results(), st.booleans())
def test_a_settled_check_always_gets_its_held_decision(cfg: CheckConfig, seq, end_ok: bool) -> None:
    """Whatever happened before, a result held long enough is eventually reported."""
    state, now = CheckState(), 0.0
    for ok, dt in seq:
        now += dt
        state, _ = step(state, ok, now, cfg)
    for _ in range(cfg.fail_after + FLAP_CHANGES + 1):
        now += cfg.flap_window + 1.0
        state, _ = step(state, end_ok, now, cfg)
    assert state.alerting == (not end_ok)


class Restarts(RuleBasedStateMachine):
    """Results interleaved with restarts that round-trip the state through JSON."""

    @initialize(cfg=check_configs(config))
    def setup(self, cfg: CheckConfig) -> None:
        self.cfg = cfg
        self.state = CheckState()
        self.now = 1_700_000_000.0
        self.history: list = []

    @rule(ok=st.booleans(), dt=st.floats(0.001, 120.0))
    def result(self, ok: bool, dt: float) -> None:
        self.now += dt
        self.state, decision = step(self.state, ok, self.now, self.cfg)
        self.history.append((ok, self.now, decision, self.state))

    @rule()
    def restart(self) -> None:
        self.state = CheckState.from_json(json.loads(json.dumps(self.state.to_json())))

    @invariant()
    def rules_hold(self) -> None:
        if hasattr(self, "cfg"):
            check_history(self.cfg, self.history)


Restarts.TestCase.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
TestRestarts = Restarts.TestCase
