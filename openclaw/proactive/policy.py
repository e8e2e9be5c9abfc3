"""
When a check's results become a message: the alert policy as a pure state
machine, so every rule can be tested without a clock or a network.

Rules (``config`` is a ``CheckConfig``):

* **Alert** once ``fail_after`` results in a row failed.  One alert per
  incident: an incident starts with that alert and ends with its recovery.
* **Recovery** on the first passing result after an alert; a failure streak
  that never alerted ends silently.
* **Re-alert** (``realert_every`` > 0) while the incident lasts, at most once
  per ``realert_every`` seconds after the last alert or re-alert.
* **Flapping** (``flap_window`` > 0): a check whose result changed more than
  ``FLAP_CHANGES`` times within the last ``flap_window`` seconds is flapping.
  While it flaps no alert, re-alert or recovery is decided: they are held,
  not dropped.  On the first result after it settles (few enough changes left
  in the window) the rules above apply to the state at that moment: a check
  still failing ``fail_after`` in a row alerts, one passing after an alert
  recovers, so an incident still gets exactly one alert and one recovery.

The state is plain data that survives a restart (``to_json``/``from_json``),
so an incident that began before a restart is neither alerted again nor left
without its recovery.  ``incident`` is stable for the whole incident and is
derived only from the state, so deciding twice (a crash before the state was
saved) yields the same id, which callers use as the notification's dedupe key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Protocol

FLAP_CHANGES = 4

Decision = Literal["alert", "realert", "recovery"] | None


class PolicyConfig(Protocol):
    fail_after: int
    realert_every: float
    flap_window: float


@dataclass(frozen=True)
class CheckState:
    """
    :ivar ok: the last result (None before the first).
    :ivar since: when the last result's value (passing or failing) began.
    :ivar failures: failing results in a row.
    :ivar alerting: an alert was sent and its recovery not yet.
    :ivar incident: id of the current (or last) alerted incident.
    :ivar incidents: incidents alerted so far; makes ``incident`` unique.
    :ivar down_since: first failure of the current (or last) incident.
    :ivar last_alert: time of the incident's last alert or re-alert.
    :ivar realerts: re-alerts sent in the current incident.
    :ivar changes: times the result changed, within ``flap_window``.
    """

    ok: bool | None = None
    since: float | None = None
    failures: int = 0
    alerting: bool = False
    incident: str = ""
    incidents: int = 0
    down_since: float | None = None
    last_alert: float | None = None
    realerts: int = 0
    changes: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "changes": list(self.changes)}

    @classmethod
    def from_json(cls, data: Any) -> CheckState:
        """A state from ``to_json`` output; unknown keys are ignored, junk gives a fresh state."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        try:
            state = cls(**{k: v for k, v in data.items() if k in known})
            return replace(state, changes=tuple(float(t) for t in state.changes))
        except (TypeError, ValueError):
            return cls()


def flapping(changes: tuple[float, ...], flap_changes: int = FLAP_CHANGES) -> bool:
    """Whether ``changes`` (already limited to the window) count as flapping."""
    return len(changes) > flap_changes


def step(
    state: CheckState, ok: bool, now: float, config: PolicyConfig, flap_changes: int = FLAP_CHANGES,
) -> tuple[CheckState, Decision]:
    """Feed one result at time ``now``; return the new state and what to send, if anything."""
    changed = state.ok is not None and ok != state.ok
    changes = state.changes + ((now,) if changed else ())
    changes = tuple(t for t in changes if t > now - config.flap_window) if config.flap_window > 0 else ()
    since = now if changed or state.since is None else state.since
    new = replace(state, ok=ok, since=since, failures=0 if ok else state.failures + 1, changes=changes)
    if flapping(changes, flap_changes):
        return new, None
    if ok:
        if state.alerting:
            return replace(new, alerting=False, realerts=0), "recovery"
        return new, None
    if not state.alerting:
        if new.failures >= config.fail_after:
            seq = state.incidents + 1
            return replace(
                new, alerting=True, incidents=seq, incident=f"{seq}-{int(since)}", down_since=since,
                last_alert=now, realerts=0,
            ), "alert"
        return new, None
    if config.realert_every > 0 and now - (state.last_alert or 0.0) >= config.realert_every:
        return replace(new, last_alert=now, realerts=state.realerts + 1), "realert"
    return new, None
