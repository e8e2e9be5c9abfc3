"""HEARTBEAT_OK in all its dressings: recognised, and never left in a delivered text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw.proactive.verdict import (
    MAX_ACK_CHARS,
    TOKEN,
    is_heartbeat_ok,
    strip_token,
)
from tests.strategies import acknowledgements, dressed_tokens

@pytest.mark.parametrize("text", [
    "HEARTBEAT_OK", " **HEARTBEAT_OK** ", "`HEARTBEAT_OK`", "HEARTBEAT_OK.", "HEARTBEAT_OK \u2014 all good",
    "> HEARTBEAT_OK\n", "## HEARTBEAT_OK", "All quiet. HEARTBEAT_OK", "**HEARTBEAT_OK**\n\nNothing needs you.",
])
def test_acks_are_ok(text: str) -> None:
    assert is_heartbeat_ok(text)


@pytest.mark.parametrize("text", [
    "", "Disk / is 96% full; clean up /var/log.", "HEARTBEAT_OKAY", "XHEARTBEAT_OK",
    "The heartbeat is fine, HEARTBEAT_OK-ish stuff aside, the disk is full.",
    "HEARTBEAT_OK\n" + "The backup job failed three times tonight. " * 10,
])
def test_messages_are_not_ok(text: str) -> None:
    assert not is_heartbeat_ok(text)


def test_a_long_message_with_the_token_is_delivered_without_it() -> None:
    message = "The backup job failed three times tonight; the NAS answers but refuses the login. " * 5
    for text in (f"**{TOKEN}**\n\n{message}", f"{message}\n`{TOKEN}`", f"{message} ({TOKEN}) done"):
        assert strip_token(text).startswith("The backup job failed") and TOKEN not in strip_token(text)


@given(dressed_tokens(), acknowledgements())
def test_token_dressed_then_a_short_ack_is_ok(token: str, ack: str) -> None:
    # A separator: "HEARTBEAT_OK0" is another word, which strip_token still removes.
    assert is_heartbeat_ok(token + " " + ack)
    assert is_heartbeat_ok(ack + " " + token)


@given(dressed_tokens(), st.text(alphabet="abcdefgh ", min_size=MAX_ACK_CHARS + 20, max_size=600).filter(
    lambda t: len(t.strip()) > MAX_ACK_CHARS + 10))
def test_token_with_a_long_message_is_not_ok(token: str, message: str) -> None:
    assert not is_heartbeat_ok(token + "x" + message)


@given(st.lists(st.one_of(dressed_tokens(), st.text(max_size=30), st.just(TOKEN[:5]), st.just(TOKEN[5:])), max_size=8))
def test_strip_never_leaves_the_token(parts: list[str]) -> None:
    assert TOKEN.lower() not in strip_token("".join(parts)).lower()
