"""
The offline rules brain: every command, unknown commands and free text.
"""

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from openclaw.agent.base import BrainRequest
from openclaw.agent.rules import (
    COMMANDS,
    GREETING,
    NO_MODEL,
    RulesBrain,
    help_text,
    parse_command,
)
from openclaw.interfaces import IBrain
from tests.llm_servers import FakeFacts


def answer(text, facts=None):
    return RulesBrain(facts or FakeFacts()).answer(text)


def test_provides_ibrain():
    assert IBrain.providedBy(RulesBrain(FakeFacts()))


@pytest_twisted.ensureDeferred
async def test_respond_fires_with_a_rules_reply():
    reply = await RulesBrain(FakeFacts()).respond(BrainRequest("s", "/status", [], "e"))
    assert (reply.text, reply.provider, reply.tool_calls) == ("all systems up", "rules", 0)
    assert reply.usage == {"input_tokens": 0, "output_tokens": 0}


def test_help_lists_every_command():
    text = answer("/help")
    assert text == help_text()
    assert all(f"/{name}" in text for name in COMMANDS)


@pytest.mark.parametrize("text,expected", [
    ("/start", GREETING),
    ("/status", "all systems up"),
    ("/checks", "disk: ok"),
    ("/report", "3 messages today"),
    ("/sessions", "2 session(s):\ntelegram:42\nwebchat:abc"),
    ("/heartbeat", "Last heartbeat: none yet\nNext heartbeat: not scheduled"),
    ("/STATUS@openclaw_bot extra words", "all systems up"),
])
def test_commands(text, expected):
    assert answer(text) == expected


def test_no_sessions_and_a_scheduled_heartbeat():
    facts = FakeFacts(sessions=[], last="2025-01-01T10:00:00Z", next="2025-01-01T10:30:00Z")
    assert answer("/sessions", facts) == "No sessions yet."
    assert answer("/heartbeat", facts) == (
        "Last heartbeat: 2025-01-01T10:00:00Z\nNext heartbeat: 2025-01-01T10:30:00Z")


def test_unknown_command_gets_help():
    assert answer("/launch now") == "Unknown command /launch.\n" + help_text()


@pytest.mark.parametrize("text", ["hello", "", "   ", "/", "/ status", "what about /status?"])
def test_free_text_says_no_model_is_configured(text):
    assert answer(text) == NO_MODEL
    assert "brain.providers" in NO_MODEL and "docs/configuration.md" in NO_MODEL


@given(st.text())
def test_any_text_gets_a_deterministic_nonempty_answer(text):
    assert answer(text) == answer(text) != ""


@given(st.text())
def test_parse_command_is_lower_case_word_or_none(text):
    command = parse_command(text)
    assert command is None or (command.isascii() and command == command.lower() and text.strip().startswith("/"))
