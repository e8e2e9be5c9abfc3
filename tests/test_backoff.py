"""The one backoff policy, by itself, and ``Retry-After`` parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw import chat_cli, outbox
from openclaw.agent import http
from openclaw.backoff import backoff_policy, retry_after
from openclaw.connectors import base, whatsapp
from openclaw.proactive import mail
from tests import strategies


@given(strategies.backoff_settings(), strategies.unit_floats(), strategies.attempts())
def test_waits_grow_stay_under_the_cap_and_are_never_negative(kw, rand, attempt) -> None:
    policy = backoff_policy(**kw, rand=lambda: rand)
    delay = policy(attempt)
    assert 0 <= delay <= kw["cap"] <= kw["cap"] * (1 + kw["jitter"])
    assert policy(attempt + 1) >= delay  # the same random share: the step never shrinks


@given(strategies.backoff_settings(), strategies.unit_floats(), strategies.attempts())
def test_jitter_takes_at_most_its_share_off_the_step(kw, rand, attempt) -> None:
    whole = backoff_policy(**kw, rand=lambda: 1.0)(attempt)
    delay = backoff_policy(**kw, rand=lambda: rand)(attempt)
    assert whole * (1 - kw["jitter"]) * (1 - 1e-9) <= delay <= whole


@given(st.floats(0.01, 100), st.floats(0, 100), st.floats(1.1, 4))
def test_without_jitter_the_random_source_is_not_used(initial, cap, factor) -> None:
    policy = backoff_policy(initial, cap, factor, rand=lambda: pytest.fail("rand was called"))
    assert policy(0) == min(initial, cap) and policy(10**9) == cap


@given(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6))
def test_a_random_source_out_of_range_is_clamped(rand, attempt) -> None:
    delay = backoff_policy(1.0, 30.0, jitter=0.5, rand=lambda: rand)(attempt)
    step = min(30.0, 2.0 ** min(max(attempt, 0), 10))
    assert step / 2 <= delay <= step


@pytest.mark.parametrize("kw", [{"initial": -1}, {"cap": -1}, {"factor": 0.5}, {"jitter": 1.5}, {"cap": float("nan")}])
def test_nonsense_settings_are_refused(kw) -> None:
    with pytest.raises(ValueError):
        backoff_policy(**kw)


def waits(policy, n: int) -> list[float]:
    return [round(policy(attempt), 6) for attempt in range(n)]


def test_each_caller_s_numbers() -> None:
    whole, least = (lambda: 1.0), (lambda: 0.0)
    # The outbox and the mail watch: 2 s doubling to 5 minutes, up to a fifth off.
    assert waits(backoff_policy(outbox.RETRY_BASE, outbox.RETRY_CAP, jitter=outbox.RETRY_JITTER, rand=whole), 10) \
        == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert waits(backoff_policy(mail.RETRY_BASE, mail.RETRY_CAP, jitter=mail.RETRY_JITTER, rand=least), 2) == [1.6, 3.2]
    # Model clients: 0.5 s doubling to 20 s, equal jitter.
    assert waits(backoff_policy(http.BACKOFF_BASE, http.BACKOFF_CAP, jitter=http.BACKOFF_JITTER, rand=least), 8) \
        == [0.25, 0.5, 1, 2, 4, 8, 10, 10]
    # Connector reconnects: 1 s doubling to backoff_max (60 s by default), equal jitter.
    assert waits(backoff_policy(base.RECONNECT_BASE, 60.0, jitter=base.RECONNECT_JITTER, rand=whole), 8) \
        == [1, 2, 4, 8, 16, 32, 60, 60]
    # WhatsApp's rate limits: 1 s doubling, at most 30 s.
    assert waits(backoff_policy(whatsapp.RATE_BASE, whatsapp.RATE_CAP, jitter=whatsapp.RATE_JITTER, rand=whole), 6) \
        == [1, 2, 4, 8, 16, 30]
    # openclaw chat: no jitter (one client, one daemon).
    assert waits(chat_cli.RECONNECT, 7) == [0.5, 1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize("value,expected", [
    (None, None), ("7", 7.0), (" 1.5 ", 1.5), ("0", 0.0), ("-1", None), ("nan", None), ("inf", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None),
])
def test_retry_after(value, expected) -> None:
    assert retry_after(value) == expected


@given(st.text())
def test_retry_after_never_raises(value) -> None:
    result = retry_after(value)
    assert result is None or result >= 0
