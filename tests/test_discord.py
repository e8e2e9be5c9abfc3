"""
The Discord connector against tests/discord_server.py (Gateway v10 over a
real WebSocket, REST over real HTTP, all on 127.0.0.1), plus its pure logic.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task

from openclaw.connectors import discord_protocol as proto
from openclaw.connectors.access import NOT_ALLOWED_REPLY, approve
from openclaw.connectors.base import FAILED
from openclaw.config.connectors import DiscordConfig
from openclaw.connectors.discord import DiscordConnector, DiscordHTTPError, DiscordRest
from openclaw.metrics import REGISTRY
from openclaw.pipeline import BUSY_REPLY
from tests.connector_harness import Harness
from tests.discord_server import BOT_ID, DiscordServer, until
from tests.eliot_tasks import answered, assert_one_task_per_message

DM, GUILD_CHANNEL, GUILD = "100", "200", "300"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"connector": "discord", **labels}) or 0.0


def reconnects(reason: str) -> float:
    return metric("openclaw_connector_reconnects_total", reason=reason)


class Running:
    """
    A local Discord and a connector (in the harness) pointed at it.  The
    heartbeat is slow unless a test is about it: on a loaded machine a late
    ACK would otherwise count as a zombie.
    """

    def __init__(self, tmp_path, token: str | None = None, heartbeat_interval: float = 60.0, **config) -> None:
        self.server = DiscordServer(heartbeat_interval=heartbeat_interval).start()
        settings = dict(enabled=True, token=self.server.token if token is None else token, api_url=self.server.api_url,
                        gateway_url=self.server.gateway_url, allow_from=("42",), stall_timeout=5.0,
                        backoff_max=0.2, rate_per_minute=0)
        settings.update(config)
        self.harness = Harness(str(tmp_path))
        self.connector = self.harness.start(lambda h: DiscordConnector(
            reactor, DiscordConfig(**settings), h.pipeline, h.store, h.notifier, environ={},
            rng=lambda: 0.0, identify_wait=(0.01, 0.01)))

    def connected(self):
        return until(self.connector.is_connected)

    def replied(self, channel_id: str, count: int):
        return until(lambda: len(self.server.replies(channel_id)) >= count)

    @defer.inlineCallbacks
    def stop(self):
        yield self.harness.stop()
        yield self.server.stop()


@pytest.fixture
def running(tmp_path):
    made = []

    def make(**kwargs) -> Running:
        made.append(Running(tmp_path, **kwargs))
        return made[-1]

    yield make
    for r in made:
        pytest_twisted.blockon(r.stop())


# The pure half


def test_close_codes_map_to_terminal_new_session_or_resume() -> None:
    assert [proto.close_action(c) for c in (4004, 4010, 4011, 4012, 4013, 4014)] == [proto.TERMINAL] * 6
    assert [proto.close_action(c) for c in (4007, 4009)] == [proto.IDENTIFY_AGAIN] * 2
    assert [proto.close_action(c) for c in (1000, 1006, 4000, 4001, 4008, None)] == [proto.RESUME_SESSION] * 6


@given(st.floats(0.001, 1e6), st.floats(-1.0, 2.0))
def test_the_first_heartbeat_falls_within_one_interval(interval: float, jitter: float) -> None:
    assert 0.0 <= proto.first_heartbeat_delay(interval, jitter) <= interval


def test_identify_asks_for_messages_in_guilds_and_dms_with_their_content() -> None:
    d = proto.identify("t")["d"]
    assert d["intents"] == (1 << 9) | (1 << 12) | (1 << 15) and d["token"] == "t"
    assert set(d["properties"]) == {"os", "browser", "device"}


def test_the_resume_url_keeps_the_version_and_encoding() -> None:
    ours = "wss://gateway.discord.gg/?v=10&encoding=json"
    assert proto.resume_url("wss://gateway-us-east1-b.discord.gg", ours) == \
        "wss://gateway-us-east1-b.discord.gg/?v=10&encoding=json"
    assert proto.resume_url("wss://x.discord.gg/?v=10", ours) == "wss://x.discord.gg/?v=10"


def _message(content="hi", guild_id=None, author_id="42", mentions=(), bot=False, **extra):
    return {"id": "1", "channel_id": "5", "content": content, "guild_id": guild_id, "type": 0,
            "author": {"id": author_id, "username": "alice", "bot": bot}, "mentions": list(mentions), **extra}


def test_which_messages_are_for_the_bot() -> None:
    assert proto.inbound(_message("  /help "), BOT_ID).text == "/help"
    assert proto.inbound(_message("hello all", guild_id="9"), BOT_ID) is None
    assert proto.inbound(_message(f"<@{BOT_ID}> /status  now", guild_id="9"), BOT_ID).text == "/status  now"
    assert proto.inbound(_message(f"hey <@!{BOT_ID}>", guild_id="9"), BOT_ID).text == "hey"
    assert proto.inbound(_message("yes", guild_id="9", mentions=[{"id": BOT_ID}]), BOT_ID).text == "yes"
    assert proto.inbound(_message(f"<@{BOT_ID}>", guild_id="9"), BOT_ID) is None
    assert proto.inbound(_message("/help", bot=True), BOT_ID) is None
    assert proto.inbound(_message("/help", author_id=BOT_ID), BOT_ID) is None
    assert proto.inbound(_message("joined", type=7), BOT_ID) is None
    found = proto.inbound(_message("a\nb", author={"id": "42", "username": "alice", "global_name": "Alice"}), BOT_ID)
    assert (found.sender_id, found.sender_name, found.channel_id, found.message_id, found.text) == \
        ("42", "Alice", "5", "1", "a\nb")


@given(st.sampled_from(["content", "author", "id", "channel_id"]))
def test_a_message_without_an_essential_field_is_malformed(field: str) -> None:
    message = _message()
    del message[field]
    with pytest.raises(proto.Malformed):
        proto.inbound(message, BOT_ID)


@given(st.text(max_size=100), st.integers(0, 1000))
def test_nonces_fit_discord_and_differ_per_part(key: str, part: int) -> None:
    assert len(proto.nonce(key, part)) <= 25
    assert proto.nonce(key, part) != proto.nonce(key, part + 1)


def test_an_exhausted_bucket_holds_its_channel_until_reset() -> None:
    limits = proto.RateLimits()
    route = "POST /channels/{channel_id}/messages"
    limits.update(route, "5", {"x-ratelimit-bucket": "b", "x-ratelimit-remaining": "0",
                               "x-ratelimit-reset-after": "2.5"}, now=10.0)
    assert limits.delay(route, "5", 11.0) == 1.5
    assert limits.delay(route, "6", 11.0) == 0.0  # another channel: another limit
    assert limits.delay(route, "5", 12.5) == 0.0


def test_a_429_waits_retry_after_and_a_global_one_holds_every_route() -> None:
    limits = proto.RateLimits()
    assert limits.limited("a", "5", {"retry_after": 0.75, "global": False}, {}, now=0.0) == 0.75
    assert limits.delay("a", "5", 0.5) == 0.25 and limits.delay("b", "5", 0.5) == 0.0
    assert limits.limited("a", "5", {"retry_after": 3, "global": True}, {}, now=0.0) == 3
    assert limits.delay("b", "7", 1.0) == 2.0
    assert limits.limited("c", "5", None, {"retry-after": "4"}, now=0.0) == 4.0


@given(st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from("12"), st.sampled_from(["0", "1"]),
                          st.one_of(st.none(), st.floats(-5, 100), st.just("nan"), st.just("x")),
                          st.floats(0, 100)), max_size=20))
def test_rate_limit_delays_are_never_negative_nor_longer_than_asked(updates) -> None:
    limits = proto.RateLimits()
    longest = 0.0
    for route, major, remaining, reset_after, now in updates:
        headers = {"x-ratelimit-remaining": remaining, "x-ratelimit-bucket": route}
        if reset_after is not None:
            headers["x-ratelimit-reset-after"] = str(reset_after)
        limits.update(route, major, headers, now)
        if isinstance(reset_after, float) and reset_after >= 0:
            longest = max(longest, now + reset_after)
        for r in "ab":
            for m in "12":
                assert 0.0 <= limits.delay(r, m, now) <= max(0.0, longest - now)


@pytest_twisted.inlineCallbacks
def test_rest_waits_out_an_empty_bucket_on_its_clock() -> None:
    clock = task.Clock()
    server = DiscordServer(clock=clock).start()
    server.bucket_limit, server.bucket_window = 1, 30.0
    rest = DiscordRest(reactor, clock, server.api_url, server.token)
    try:
        yield rest.create_message(DM, "one", "n1")
        second = rest.create_message(DM, "two", "n2")
        assert server.rest_requests == 1 and not second.called
        assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [30.0]
        clock.advance(30.0)
        yield second
        assert [p["content"] for p in server.posted] == ["one", "two"] and server.bucket_violations == 0
    finally:
        yield server.stop()


# Against the local Discord


@pytest_twisted.inlineCallbacks
def test_a_direct_message_is_answered_and_the_bots_own_echo_ignored(running) -> None:
    r = running()
    yield r.connected()
    (kind, identify), = r.server.identifies
    assert kind == "gateway" and identify["token"] == r.server.token and identify["intents"] == proto.INTENTS
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)
    assert r.server.replies(DM)[0].startswith("Commands:")
    r.server.message(DM, "/status")
    yield r.replied(DM, 2)
    assert len(r.server.replies(DM)) == 2  # the echoes of our replies started no conversation
    history = yield r.harness.store.history(f"discord:{DM}", 10)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert r.connector.health()["resumable"] is True


@pytest_twisted.inlineCallbacks
def test_busy_is_answered_in_the_channel_since_discord_does_not_redeliver(running) -> None:
    r = running()
    yield r.connected()
    limits = r.harness.pipeline.limits
    r.harness.pipeline.limits = replace(limits, max_queue=0)
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)
    assert r.server.replies(DM) == [BUSY_REPLY]
    assert (yield r.harness.store.history(f"discord:{DM}", 10)) == []  # nothing recorded
    r.harness.pipeline.limits = limits


@pytest_twisted.inlineCallbacks
def test_each_message_is_its_own_eliot_task_from_receive_to_sent(running, eliot_logger) -> None:
    r = running()
    yield r.connected()
    r.server.message(DM, "/help")
    r.server.message(DM, "/status")
    yield until(lambda: answered(eliot_logger.messages, "discord", 2), what="two answered tasks")
    assert_one_task_per_message(eliot_logger.messages, "discord", 2)


@pytest_twisted.inlineCallbacks
def test_in_a_guild_only_mentions_are_answered_and_bots_never(running) -> None:
    r = running()
    yield r.connected()
    r.server.message(GUILD_CHANNEL, "/help", guild_id=GUILD)
    r.server.message(GUILD_CHANNEL, f"<@{BOT_ID}> /help", guild_id=GUILD, author_id="43", bot=True)
    r.server.message(GUILD_CHANNEL, f"<@{BOT_ID}> /help", guild_id=GUILD)
    r.server.message(GUILD_CHANNEL, "/status", guild_id=GUILD, mentions=(BOT_ID,))
    yield r.replied(GUILD_CHANNEL, 2)
    history = yield r.harness.store.history(f"discord:{GUILD_CHANNEL}", 10)
    assert [m["text"] for m in history if m["role"] == "user"] == ["/help", "/status"]
    assert r.server.replies(GUILD_CHANNEL)[0].startswith("Commands:")


@pytest_twisted.inlineCallbacks
def test_a_long_reply_is_split_and_a_retried_delivery_posts_nothing_twice(running) -> None:
    r = running()
    yield r.connected()
    text = "\n\n".join(f"paragraph {n} " + "word " * 150 for n in range(12))
    yield r.connector.send_text(DM, text, "reply:long")
    parts = r.server.replies(DM)
    assert len(parts) > 1 and all(len(p) <= 2000 for p in parts)
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())
    yield r.connector.send_text(DM, text, "reply:long")
    assert r.server.replies(DM) == parts


@pytest_twisted.inlineCallbacks
def test_a_429_is_waited_out_then_the_reply_goes(running) -> None:
    r = running()
    yield r.connected()
    r.server.rate_limit_first = 2
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)
    assert r.server.rest_requests == 3 and len(r.server.replies(DM)) == 1


@pytest_twisted.inlineCallbacks
def test_a_rest_401_fails_the_send_but_not_the_gateway(running) -> None:
    r = running()
    yield r.connected()
    r.server.rest_token = "revoked"
    with pytest.raises(DiscordHTTPError, match="401"):
        yield r.connector.send_text(DM, "hello", "k")
    assert r.connector.is_connected()


@pytest_twisted.inlineCallbacks
def test_a_close_4000_resumes_the_session_where_it_was(running) -> None:
    r = running()
    yield r.connected()
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)
    session, seq = r.server.session["id"], r.server.session["seq"]
    before = reconnects("closed")
    r.server.close_live(4000)
    yield until(lambda: r.server.resumes)
    (kind, resume), = r.server.resumes
    assert kind == "resume" and resume["session_id"] == session and resume["seq"] == seq
    r.server.message(DM, "/status")
    yield r.replied(DM, 2)
    assert len(r.server.identifies) == 1 and reconnects("closed") == before + 1


@pytest_twisted.inlineCallbacks
def test_a_server_restart_loses_no_message(running) -> None:
    r = running()
    yield r.connected()
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)
    yield r.server.restart()
    r.server.message(DM, "/status 1")  # sent while the bot is away: replayed on RESUME
    r.server.message(DM, "/status 2")
    yield until(lambda: r.server.resumes and r.connector.is_connected())
    r.server.message(DM, "/status 3")
    yield r.replied(DM, 4)
    history = yield r.harness.store.history(f"discord:{DM}", 20)
    assert [m["text"] for m in history if m["role"] == "user"] == ["/help", "/status 1", "/status 2", "/status 3"]
    assert len(r.server.identifies) == 1 and r.server.resumes[0][1]["session_id"] == r.server.session["id"]


@pytest_twisted.inlineCallbacks
def test_session_policy_new_session_after_4009_resume_after_op7_identify_after_invalid_session(running) -> None:
    r = running()
    yield r.connected()
    r.server.close_live(4009)
    yield until(lambda: len(r.server.identifies) == 2 and r.connector.is_connected())
    assert r.server.identifies[1][0] == "gateway" and not r.server.resumes
    r.server._send(r.server.live, {"op": 7, "d": None})
    yield until(lambda: len(r.server.resumes) == 1 and r.connector.is_connected())
    r.server.forget_session()
    r.server.close_live(4000)
    yield until(lambda: len(r.server.identifies) == 3 and r.connector.is_connected())
    assert len(r.server.resumes) == 2  # refused with INVALID_SESSION, then a fresh IDENTIFY
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)


@pytest_twisted.inlineCallbacks
def test_a_heartbeat_request_is_answered_at_once(running) -> None:
    r = running()
    yield r.connected()
    yield until(lambda: len(r.server.heartbeats) == 1)  # the first beat (jitter 0)
    r.server._send(r.server.live, {"op": 1, "d": None})
    yield until(lambda: len(r.server.heartbeats) == 2)
    assert r.server.heartbeats[1] == r.server.session["seq"]


@pytest_twisted.inlineCallbacks
def test_unacknowledged_heartbeats_are_a_zombie_closed_and_resumed(running) -> None:
    r = running(heartbeat_interval=0.2, stall_timeout=30.0)  # the heartbeat notices, not the watchdog
    yield r.connected()
    before = reconnects("stall")
    r.server.ack = False
    yield until(lambda: reconnects("stall") > before)
    r.server.ack = True
    yield until(lambda: r.server.resumes and r.connector.is_connected())
    assert len(r.server.identifies) == 1
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)


@pytest_twisted.inlineCallbacks
def test_a_server_that_never_says_hello_is_left_for_a_new_connection(running) -> None:
    before = reconnects("stall")
    r = running(stall_timeout=0.5)
    r.server.hello = False
    yield until(lambda: reconnects("stall") > before and r.server.connections >= 2)
    r.server.hello = True
    yield r.connected()
    r.server.message(DM, "/help")
    yield r.replied(DM, 1)


@pytest_twisted.inlineCallbacks
def test_a_rejected_token_stops_the_connector_without_retrying(running) -> None:
    before = sum(reconnects(reason) for reason in ("closed", "error", "stall"))
    r = running(token="wrong-token")
    yield until(lambda: r.harness.pushed)
    assert r.connector.state == FAILED and "4004" in r.connector.last_error
    assert "stopped" in r.harness.pushed[0][2]["message"]
    assert len(r.server.identifies) == 1 and r.server.connections == 1
    assert sum(reconnects(reason) for reason in ("closed", "error", "stall")) == before


@pytest_twisted.inlineCallbacks
def test_without_a_token_the_connector_fails_at_once(running) -> None:
    r = running(token="")
    yield until(lambda: r.connector.state == FAILED)
    assert "DISCORD_BOT_TOKEN" in r.connector.last_error and r.server.connections == 0


@pytest_twisted.inlineCallbacks
def test_malformed_frames_are_skipped_and_the_connection_stays(running) -> None:
    r = running()
    yield r.connected()
    before = metric("openclaw_connector_refused_total", reason="malformed")
    r.server.send_raw(b"{not json")
    r.server.send_raw(b"\x00\x01", binary=True)
    r.server.send_raw(b'{"op": 42, "d": null}')
    r.server.message(DM, "/help", drop=("content",))
    r.server.message(DM, "/help", drop=("author",))
    r.server.message(DM, "/status")
    yield r.replied(DM, 1)
    assert metric("openclaw_connector_refused_total", reason="malformed") == before + 5
    assert r.server.connections == 1 and r.connector.is_connected()
    assert r.server.replies(DM)[0] != "" and len(r.server.replies(DM)) == 1


@pytest_twisted.inlineCallbacks
def test_an_unknown_sender_is_refused(running) -> None:
    r = running()
    yield r.connected()
    r.server.message(DM, "/help", author_id="77")
    yield r.replied(DM, 1)
    assert r.server.replies(DM) == [NOT_ALLOWED_REPLY]
    history = yield r.harness.store.history(f"discord:{DM}", 10)
    assert history == []


@pytest_twisted.inlineCallbacks
def test_pairing_lets_an_approved_sender_through(running) -> None:
    r = running(allow_from=(), pairing=True)
    yield r.connected()
    r.server.message(DM, "/help", author_id="77")
    yield r.replied(DM, 1)
    code = re.search(r"approve (\d{6})", r.server.replies(DM)[0]).group(1)
    approved = yield approve(r.harness.store, code, reactor.seconds())
    assert approved == "discord:77"
    r.server.message(DM, "/help", author_id="77")
    yield r.replied(DM, 2)
    assert r.server.replies(DM)[1].startswith("Commands:")
