"""The Slack connector against a local Socket Mode + Web API server (tests/slack_server.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task

from openclaw.metrics import REGISTRY
from openclaw.connectors.access import NOT_ALLOWED_REPLY, approve
from openclaw.connectors.base import CONNECTED, FAILED
from openclaw.connectors.slack import (
    TEXT_LIMIT,
    Inbound,
    Malformed,
    SlackConnector,
    SlackError,
    escape,
    escaped_length,
    inbound_message,
    unescape,
)
from openclaw.connectors.split import split_text
from tests.connector_harness import Harness
from tests.eliot_tasks import INBOUND, answered, assert_one_task_per_message, inbound_tasks, kind
from tests.slack_server import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    NORMAL,
    SILENT,
    STALL,
    SlackServer,
    config,
    until,
)
from tests.strategies import slack_events, slack_values


@pytest.fixture
def server():
    slack = SlackServer().start()
    yield slack
    pytest_twisted.blockon(slack.stop())


class Recorder:
    """A ``sleep`` that records the delays asked for and waits one reactor turn."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> defer.Deferred:
        self.delays.append(delay)
        d: defer.Deferred = defer.Deferred()
        reactor.callLater(0, d.callback, None)
        return d


@pytest.fixture
def harness(tmp_path, server):
    """Stopped before the server (it is set up first)."""
    core = Harness(str(tmp_path))
    yield core
    pytest_twisted.blockon(core.stop())


def start(harness: Harness, server: SlackServer, sleep: Any = None, **overrides: Any) -> SlackConnector:
    return harness.start(lambda h: SlackConnector(
        reactor, config(server, **overrides), h.pipeline, h.store, h.notifier, environ={}, rng=lambda: 0.0,
        sleep=sleep))


def busy_refusals() -> float:
    return REGISTRY.get_sample_value("openclaw_admission_refused_total", {"reason": "overall"}) or 0.0


def connected(connector: SlackConnector) -> bool:
    return connector.state == CONNECTED


@defer.inlineCallbacks
def user_texts(harness: Harness, session: str) -> Any:
    history = yield harness.store.history(session, 50)
    return [m["text"] for m in history if m["role"] == "user"]


# Which events are answered (pure)

def dm(**fields: Any) -> dict:
    return {"type": "message", "channel": "D1", "user": "U1", "text": "hi", "ts": "1.1", "channel_type": "im", **fields}


def test_direct_messages_and_mentions_are_answered_other_events_are_not() -> None:
    assert inbound_message(dm(text="a &lt;b&gt; &amp; c"), BOT_USER) == Inbound("D1", "U1", "a <b> & c", "1.1")
    mention = {"type": "app_mention", "channel": "C1", "user": "U1", "text": "<@UBOT> /status now", "ts": "2.2"}
    assert inbound_message(mention, BOT_USER).text == "/status now"
    assert inbound_message({**mention, "text": "hey <@UBOT|openclaw>, hi <@U2>"}, BOT_USER).text == "hey , hi <@U2>"
    assert inbound_message(dm(text="x"), BOT_USER).message_id == "D1:1.1"
    ignored = [
        dm(bot_id="B1"), dm(subtype="bot_message"), dm(subtype="message_changed"), dm(channel_type="channel"),
        dm(user=BOT_USER), dm(text="  "), {**mention, "text": "<@UBOT>"}, {"type": "reaction_added"},
    ]
    assert [inbound_message(e, BOT_USER) for e in ignored] == [None] * len(ignored)
    for bad in (None, [], dm(channel=None), dm(ts=""), dm(user=5), dm(text=None)):
        with pytest.raises(Malformed):
            inbound_message(bad, BOT_USER)


@given(slack_values() | slack_events(BOT_USER))
def test_any_event_is_answered_ignored_or_malformed(event: Any) -> None:
    try:
        message = inbound_message(event, BOT_USER)
    except Malformed:
        return
    if message is not None:
        assert message.text and message.text == message.text.strip() and message.user != BOT_USER


@given(st.text(alphabet="a<>& \n", max_size=300))
def test_escaped_parts_fit_and_unescape_to_the_text(text: str) -> None:
    parts = split_text(text, 20, escaped_length)
    assert all(len(escape(p)) <= 20 for p in parts)
    assert all(unescape(escape(p)) == p for p in parts)


# Receive and reply

@pytest_twisted.inlineCallbacks
def test_a_direct_message_is_recorded_acknowledged_and_answered(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    assert ("auth.test", BOT_TOKEN) in server.calls and ("apps.connections.open", APP_TOKEN) in server.calls
    envelope = server.message("/help")
    yield until(lambda: server.texts("D1") and server.acks)
    assert server.acks == [envelope] and not server.pending
    assert "/status" in server.texts("D1")[0]
    assert (yield user_texts(harness, "slack:D1")) == ["/help"]
    mention = server.event({"type": "app_mention", "channel": "C9", "user": "U1", "text": "<@UBOT> /help",
                            "ts": "1800000001.000001"})
    yield until(lambda: server.texts("C9") and mention in server.acks)
    assert (yield user_texts(harness, "slack:C9")) == ["/help"]
    assert connector.health()["connected"] and connector.health()["last_receive"]


@pytest_twisted.inlineCallbacks
def test_each_message_is_its_own_eliot_task_from_receive_to_sent(harness, server, eliot_logger) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    server.message("/help")
    server.message("/status")
    yield until(lambda: answered(eliot_logger.messages, "slack", 2), what="two answered tasks")
    assert_one_task_per_message(eliot_logger.messages, "slack", 2)


@pytest_twisted.inlineCallbacks
def test_a_busy_pipeline_leaves_the_envelope_unacknowledged_for_slack_to_send_again(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    limits = harness.pipeline.limits
    harness.pipeline.limits = replace(limits, max_pending=0)
    refused = busy_refusals()
    busy = server.message("/help")
    yield until(lambda: busy_refusals() > refused, what="busy")
    assert busy not in server.acks and (yield user_texts(harness, "slack:D1")) == []
    harness.pipeline.limits = limits
    later = server.message("/status")
    yield until(lambda: later in server.acks, what="the next envelope")
    assert busy not in server.acks  # left for Slack to send again


@pytest_twisted.inlineCallbacks
def test_events_not_answered_are_still_acknowledged(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    ignored = [
        server.message("from a bot", bot_id="B1"), server.message("edited", subtype="message_changed"),
        server.message("channel chatter", channel_type="channel"), server.message("me", user=BOT_USER),
        server.event({"type": "reaction_added", "user": "U1"}), server.event({}, kind="slash_commands"),
    ]
    answered = server.message("/help")
    yield until(lambda: answered in server.acks)
    assert set(server.acks) == {answered, *ignored}
    yield until(lambda: server.texts("D1"))
    assert len(server.posted) == 1 and (yield user_texts(harness, "slack:D1")) == ["/help"]


# Sending

@pytest_twisted.inlineCallbacks
def test_long_replies_are_split_and_escaped(harness, server) -> None:
    connector = start(harness, server)
    paragraph = ("word " * 2000).strip()
    text = "\n\n".join([paragraph] * 9) + "\n\na < b & c"
    yield connector.send_text("D1", text, "reply:long")
    parts = server.texts("D1")
    assert len(parts) == 3 and all(len(p) <= TEXT_LIMIT for p in parts)
    assert parts[-1].endswith("a &lt; b &amp; c")
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", escape(text))


@pytest_twisted.inlineCallbacks
def test_429_is_waited_out_as_retry_after_says(harness, server) -> None:
    sleep = Recorder()
    connector = start(harness, server, sleep=sleep)
    server.rate_limited, server.retry_after = 2, "3"
    yield connector.send_text("D1", "hello", "reply:1")
    assert sleep.delays == [3.0, 3.0] and server.texts("D1") == ["hello"] and server.count("chat.postMessage") == 3
    server.rate_limited, server.retry_after = 1, "600"
    with pytest.raises(SlackError, match="ratelimited"):
        yield connector.send_text("D1", "later", "reply:2")
    assert sleep.delays == [3.0, 3.0]


@pytest_twisted.inlineCallbacks
def test_a_refused_post_fails_and_a_retry_resumes_after_the_parts_sent(harness, server) -> None:
    connector = start(harness, server)
    server.errors["chat.postMessage"] = "channel_not_found"
    with pytest.raises(SlackError, match="channel_not_found"):
        yield connector.send_text("D1", "hi", "reply:1")
    del server.errors["chat.postMessage"]
    text = "a" * TEXT_LIMIT + " " + "b" * TEXT_LIMIT
    server.posts_allowed = 1
    with pytest.raises(SlackError, match="internal_error"):
        yield connector.send_text("D1", text, "reply:2")
    assert server.texts("D1") == ["a" * TEXT_LIMIT]
    server.posts_allowed = None
    yield connector.send_text("D1", text, "reply:2")
    assert server.texts("D1") == ["a" * TEXT_LIMIT, "b" * TEXT_LIMIT]


# Keeping the connection

@pytest_twisted.inlineCallbacks
def test_a_server_restart_loses_nothing_and_answers_once(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    server.ignore_acks = True  # the ack of this one is lost when the server goes down
    lost_ack = server.message("/status one")
    yield until(lambda: len(server.texts("D1")) == 1)
    yield server.stop()
    yield until(lambda: not connected(connector))
    while_down = server.message("/status two")
    server.ignore_acks = False
    server.start()
    yield until(lambda: len(server.texts("D1")) == 2 and not server.pending)
    assert server.acks.count(lost_ack) == 1 and server.acks.count(while_down) == 1
    assert server.pending == {} and connector.reconnects >= 1 and server.connections >= 2
    assert (yield user_texts(harness, "slack:D1")) == ["/status one", "/status two"]
    yield harness.outbox.kick()
    assert len(server.texts("D1")) == 2


@pytest_twisted.inlineCallbacks
def test_a_disconnect_request_opens_a_new_connection(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    server.send_raw({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "local"}})
    yield until(lambda: server.connections == 2 and connected(connector))
    assert server.count("apps.connections.open") == 2 and server.count("auth.test") == 1
    server.message("/help")
    yield until(lambda: server.texts("D1"))


@pytest.mark.parametrize("mode", [STALL, SILENT])
@pytest_twisted.inlineCallbacks
def test_a_stalled_connection_is_replaced(harness, server, mode) -> None:
    server.socket_mode = mode
    connector = start(harness, server, stall_timeout=0.5)
    yield until(lambda: server.connections >= 2)
    assert connector.reconnects >= 1 and "no data for 0.5s" in connector.last_error
    server.socket_mode = NORMAL
    yield until(lambda: connected(connector))
    server.message("/help")
    yield until(lambda: server.texts("D1"))


@pytest_twisted.inlineCallbacks
def test_our_pings_keep_a_quiet_connection(harness, server) -> None:
    connector = start(harness, server, stall_timeout=2.5)
    yield until(lambda: server.pings >= 3, timeout=10)  # each answered by a pong
    assert server.connections == 1 and connector.reconnects == 0


@pytest_twisted.inlineCallbacks
def test_slack_pings_keep_a_quiet_connection(harness, server) -> None:
    server.socket_mode = SILENT  # it answers none of our pings
    connector = start(harness, server, stall_timeout=0.5)
    yield until(lambda: connected(connector))
    sent = []
    pinger = task.LoopingCall(lambda: sent.append(server.ping()))
    pinger.start(0.1)
    yield until(lambda: len(sent) >= 15)  # three stall timeouts at least
    pinger.stop()
    assert server.connections == 1 and connector.reconnects == 0
    yield until(lambda: server.connections == 2)


@pytest.mark.parametrize("method,error", [
    ("auth.test", "invalid_auth"), ("apps.connections.open", "token_revoked"),
    ("apps.connections.open", "not_allowed_token_type"),
])
@pytest_twisted.inlineCallbacks
def test_refused_credentials_stop_the_connector_without_a_retry_storm(harness, server, method, error) -> None:
    server.errors[method] = error
    connector = start(harness, server, backoff_max=0.001)
    yield until(lambda: connector.state == FAILED)
    assert server.count(method) == 1 and error in connector.health()["last_error"]
    assert connector._timer is None and connector._current is None
    assert not connector.health()["connected"]


@pytest_twisted.inlineCallbacks
def test_tokens_come_from_the_environment(harness, server) -> None:
    environ = {"SLACK_APP_TOKEN": APP_TOKEN, "SLACK_BOT_TOKEN": BOT_TOKEN}
    connector = harness.start(lambda h: SlackConnector(
        reactor, config(server, app_token="", bot_token=""), h.pipeline, h.store, h.notifier, environ=environ))
    yield until(lambda: connected(connector))


@pytest_twisted.inlineCallbacks
def test_a_missing_token_is_terminal(harness, server) -> None:
    connector = start(harness, server, app_token="")
    yield until(lambda: connector.state == FAILED)
    assert "SLACK_APP_TOKEN" in connector.last_error and server.calls == []


@pytest_twisted.inlineCallbacks
def test_other_api_errors_and_a_disabled_link(harness, server) -> None:
    server.errors["apps.connections.open"] = "internal_error"
    connector = start(harness, server)
    yield until(lambda: server.count("apps.connections.open") >= 3)
    assert connector.state != FAILED and "internal_error" in connector.last_error
    del server.errors["apps.connections.open"]
    yield until(lambda: connected(connector))
    server.send_raw({"type": "disconnect", "reason": "link_disabled"})
    yield until(lambda: connector.state == FAILED)
    assert "link_disabled" in connector.last_error


@pytest_twisted.inlineCallbacks
def test_malformed_frames_are_skipped_and_the_connection_goes_on(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    server.send_raw(b"{not json")
    server.send_raw(b"[1, 2]")
    server.send_raw({"type": "surprise"})
    server.send_raw({"envelope_id": "env-x", "type": "events_api"})
    no_channel = server.message("hi", channel=None)
    odd_event = server.event("not an event")
    answered = server.message("/help")
    yield until(lambda: server.texts("D1") and answered in server.acks)
    assert {"env-x", no_channel, odd_event, answered} == set(server.acks)
    assert server.connections == 1 and connector.reconnects == 0 and connected(connector)


# Who may talk

@pytest_twisted.inlineCallbacks
def test_unknown_senders_are_refused_and_nothing_is_recorded(harness, server) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    envelope = server.message("/help", user="U666", channel="D666")
    yield until(lambda: envelope in server.acks)
    assert server.texts("D666") == [NOT_ALLOWED_REPLY]
    assert (yield user_texts(harness, "slack:D666")) == []


@pytest_twisted.inlineCallbacks
def test_pairing_approval_lets_the_sender_through(harness, server) -> None:
    connector = start(harness, server, allow_from=(), pairing=True)
    yield until(lambda: connected(connector))
    server.message("hello?", user="U2", channel="D2")
    yield until(lambda: server.texts("D2"))
    code = re.search(r"approve (\d{6})", server.texts("D2")[0]).group(1)
    assert (yield approve(harness.store, code, reactor.seconds())) == "slack:U2"
    server.message("/help", user="U2", channel="D2")
    yield until(lambda: len(server.texts("D2")) == 2)
    assert "/status" in server.texts("D2")[1]
    assert (yield user_texts(harness, "slack:D2")) == ["/help"]


@pytest_twisted.inlineCallbacks
def test_a_message_refused_while_draining_is_not_acknowledged(harness, server, eliot_logger) -> None:
    connector = start(harness, server)
    yield until(lambda: connected(connector))
    harness.pipeline.refuse_new()
    envelope = server.message("/help")
    yield until(lambda: connector.last_receive is not None)
    yield connector.drain()
    harness.pipeline.draining = False
    later = server.message("/status")
    yield until(lambda: later in server.acks)  # frames arrive in order: an ack of the first would be in
    assert envelope not in server.acks and envelope in server.pending
    first = inbound_tasks(eliot_logger.messages, "slack")[0]  # not a failure: it comes again after the restart
    assert [(kind(m), m.get("verdict")) for m in first] == [
        ((INBOUND, "started"), None), ((INBOUND, "succeeded"), "shutting-down")]
    yield server.stop()
    server.start()
    yield until(lambda: envelope in server.acks and len(server.texts("D1")) == 2)
    assert (yield user_texts(harness, "slack:D1")) == ["/status", "/help"]


@pytest_twisted.inlineCallbacks
def test_a_bot_token_revoked_while_running_stops_the_connector(harness, server) -> None:
    connector = start(harness, server, backoff_max=0.001)
    yield until(lambda: connected(connector))
    server.errors["chat.postMessage"] = "token_revoked"
    try:
        yield connector.send_text("D1", "hello", "k1")
    except Exception as e:  # noqa: BLE001 - the send fails, and so does the connector
        assert "token_revoked" in str(e)
    else:
        raise AssertionError("the send should have failed")
    yield until(lambda: connector.state == FAILED)
    opened = server.count("apps.connections.open")
    assert "token_revoked" in connector.health()["last_error"] and connector._timer is None
    assert server.count("apps.connections.open") == opened  # no reconnect storm
