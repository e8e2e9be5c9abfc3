"""Who may talk to openclaw: allowlists, pairing codes, the per-sender rate limit."""

from __future__ import annotations

import random

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from openclaw.connectors import access
from openclaw.connectors.access import Access, TokenBucket


@given(st.integers(min_value=1, max_value=60), st.lists(st.floats(min_value=0, max_value=30), max_size=200))
def test_a_bucket_never_grants_more_than_capacity_plus_refill(capacity: int, gaps: list[float]) -> None:
    bucket = TokenBucket(capacity, capacity / 60.0, 0.0)
    now, granted = 0.0, 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now)
    assert granted <= capacity + now * capacity / 60.0 + 1e-9


def test_a_bucket_refills_over_time() -> None:
    bucket = TokenBucket(2, 2 / 60.0, 0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(29.0) is False and bucket.take(31.0) is True



@pytest_twisted.inlineCallbacks
def test_an_empty_allowlist_refuses_everyone(store) -> None:
    gate = Access("telegram", (), False, 10, store, Clock())
    decision = yield gate.decide("42", "42")
    assert decision.verdict == "not_allowed" and decision.reply == access.NOT_ALLOWED_REPLY


@pytest_twisted.inlineCallbacks
def test_a_refused_sender_hears_why_once_per_quiet_period(store) -> None:
    clock = Clock()
    gate = Access("telegram", (), False, 10, store, clock)
    replies = []
    for _ in range(3):
        replies.append((yield gate.decide("99", "99")).reply)
    assert replies == [access.NOT_ALLOWED_REPLY, None, None]
    clock.advance(access.REFUSAL_QUIET)
    assert (yield gate.decide("99", "99")).reply == access.NOT_ALLOWED_REPLY
    assert (yield gate.decide("98", "98")).verdict == "not_allowed"


@pytest_twisted.inlineCallbacks
def test_listed_senders_and_the_wildcard_pass(store) -> None:
    assert (yield Access("telegram", ("42",), False, 10, store, Clock()).decide("42", "1")).verdict == "allowed"
    assert (yield Access("telegram", ("42",), False, 10, store, Clock()).decide("43", "1")).verdict == "not_allowed"
    assert (yield Access("telegram", ("*",), False, 10, store, Clock()).decide("43", "1")).verdict == "allowed"


@pytest_twisted.inlineCallbacks
def test_pairing_gives_one_code_per_sender_until_approved(store) -> None:
    clock = Clock()
    gate = Access("discord", (), True, 10, store, clock, rng=random.Random(7))
    first = yield gate.decide("u1", "c1", "Ann")
    quiet = yield gate.decide("u1", "c1", "Ann")
    clock.advance(access.REFUSAL_QUIET)
    again = yield gate.decide("u1", "c1", "Ann")
    assert first.verdict == quiet.verdict == "pairing" and quiet.reply is None
    assert first.reply == again.reply  # the same live code, not a new one
    code = first.reply.split("approve ")[1].split()[0]
    assert len(code) == 6 and code.isdigit()
    pending = yield access.pending_pairings(store, clock.seconds())
    assert [(p["code"], p["connector"], p["sender_id"]) for p in pending] == [(code, "discord", "u1")]
    assert (yield access.approve(store, "000000" if code != "000000" else "111111", clock.seconds())) is None
    assert (yield access.approve(store, code, clock.seconds())) == "discord:u1"
    assert (yield gate.decide("u1", "c1")).verdict == "allowed"
    assert [a["sender"] for a in (yield access.approved(store))] == ["discord:u1"]
    assert (yield access.revoke(store, "discord:u1")) is True
    assert (yield gate.decide("u1", "c1")).verdict == "pairing"


@pytest_twisted.inlineCallbacks
def test_codes_expire_after_fifteen_minutes(store) -> None:
    clock = Clock()
    gate = Access("slack", (), True, 10, store, clock)
    decision = yield gate.decide("u9", "c9")
    code = decision.reply.split("approve ")[1].split()[0]
    clock.advance(access.PAIRING_TTL + 1)
    assert (yield access.approve(store, code, clock.seconds())) is None
    assert (yield access.pending_pairings(store, clock.seconds())) == []


@pytest_twisted.inlineCallbacks
def test_a_fast_sender_is_told_once_then_ignored_until_the_bucket_refills(store) -> None:
    clock = Clock()
    gate = Access("telegram", ("7",), False, 3, store, clock)
    verdicts = []
    for _ in range(6):
        verdicts.append((yield gate.decide("7", "7")))
    assert [d.verdict for d in verdicts] == ["allowed"] * 3 + ["rate_limited"] * 3
    assert [d.reply is not None for d in verdicts[3:]] == [True, False, False]
    clock.advance(20)
    assert (yield gate.decide("7", "7")).verdict == "allowed"
    assert (yield gate.decide("8", "8")).verdict == "not_allowed"
