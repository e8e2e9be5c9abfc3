"""The Telegram connector against a local Bot API: polling, sending, failures, webhook."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import TimeoutError
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from openclaw import metrics
from openclaw.agent.rules import GREETING, NO_MODEL
from openclaw.connectors.access import NOT_ALLOWED_REPLY, approve
from openclaw.connectors.base import FAILED
from openclaw.config.connectors import TelegramConfig
from openclaw.connectors.split import utf16_length
from openclaw.connectors.telegram import (
    OFFSET_KEY,
    REQUEST_TIMEOUT,
    ApiError,
    BadReply,
    Incoming,
    MalformedUpdate,
    TelegramConnector,
    addressed,
    parse_reply,
    parse_update,
)
from openclaw.logs import LoggingService
from openclaw.web import WebService
from tests.connector_harness import Harness
from tests.eliot_tasks import answered, assert_one_task_per_message, one_task
from tests.strategies import telegram_values
from tests.llm_servers import eliot_messages
from tests.telegram_server import TOKEN, USERNAME, BotAPI, error, ok, text_update, until

SECRET = "webhook-SECRET-42"


def counted(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"connector": "telegram", **labels}) or 0.0


def malformed() -> float:
    return counted("openclaw_connector_refused_total", reason="malformed")


def config(api: BotAPI, **overrides: Any) -> TelegramConfig:
    values: dict[str, Any] = {
        "enabled": True, "token": TOKEN, "api_url": api.url, "allow_from": ("42",), "rate_per_minute": 0,
        "poll_timeout": 0.3, "stall_timeout": 1.0, "backoff_max": 2.0,
    }
    return TelegramConfig(**{**values, **overrides})


def start(h: Harness, api: BotAPI, **overrides: Any) -> TelegramConnector:
    return h.start(lambda h: TelegramConnector(
        reactor, config(api, **overrides), h.pipeline, h.store, h.notifier, environ={}, rng=lambda: 0.0))


@pytest_twisted.async_yield_fixture
async def api():
    server = BotAPI().start()
    yield server
    await server.stop()


@pytest_twisted.async_yield_fixture
async def harnesses(tmp_path):
    made: list[Harness] = []

    def make() -> Harness:
        made.append(Harness(str(tmp_path)))
        return made[-1]

    yield make
    for h in made:
        if h.store.running:
            await h.stop()


# Pure parsing


@given(telegram_values())
def test_any_update_parses_to_a_message_nothing_or_malformed(update: Any) -> None:
    try:
        result = parse_update(update, USERNAME)
    except MalformedUpdate:
        return
    assert result is None or isinstance(result, Incoming)


@given(chat=st.integers(-10**13, 10**13), sender=st.integers(1, 10**10), message=st.integers(1, 10**9),
       text=st.text(min_size=1).filter(lambda t: not t.startswith("/")), name=st.text(min_size=1))
def test_a_text_message_keeps_its_ids_text_and_sender_name(chat: int, sender: int, message: int, text: str,
                                                         name: str) -> None:
    update = {"update_id": 1, "message": {"message_id": message, "chat": {"id": chat},
                                          "from": {"id": sender, "first_name": name}, "text": text}}
    assert parse_update(update, USERNAME) == Incoming(str(chat), str(sender), name, f"{chat}:{message}", text)


def test_updates_that_are_no_text_for_this_bot_are_nothing() -> None:
    base = {"message_id": 1, "chat": {"id": 5}, "from": {"id": 5, "username": "ann"}}
    assert parse_update({"update_id": 1, "edited_message": base}, USERNAME) is None
    assert parse_update({"update_id": 1, "message": {**base, "sticker": {"file_id": "x"}}}, USERNAME) is None
    assert parse_update({"update_id": 1, "message": {**base, "text": "/help@other_bot"}}, USERNAME) is None
    parsed = parse_update({"update_id": 1, "message": {**base, "text": "hi"}}, USERNAME)
    assert parsed is not None and parsed.sender_name == "ann"
    with pytest.raises(MalformedUpdate, match="message.chat.id"):
        parse_update({"update_id": 1, "message": {**base, "chat": {"id": "5"}, "text": "hi"}}, USERNAME)
    with pytest.raises(MalformedUpdate, match="text"):
        parse_update({"update_id": 1, "message": {**base, "text": 5}}, USERNAME)


@pytest.mark.parametrize("text, expected", [
    ("/help@openclaw_test_bot", "/help"),
    ("/Start@OpenClaw_Test_Bot now", "/Start now"),
    ("/help@other_bot", None),
    ("/help", "/help"),
    ("mail me@openclaw_test_bot", "mail me@openclaw_test_bot"),
])
def test_commands_lose_this_bots_name_and_ignore_other_bots(text: str, expected: str | None) -> None:
    assert addressed(text, USERNAME) == expected


@given(st.integers(100, 599), st.binary(max_size=50) | telegram_values().map(lambda v: json.dumps(v).encode()))
def test_any_answer_gives_a_result_or_an_api_error(status: int, body: bytes) -> None:
    try:
        parse_reply("getMe", status, body)
    except BadReply:
        assert status == 200
    except ApiError as e:
        assert e.method == "getMe"


def test_an_error_answer_carries_status_description_and_retry_after() -> None:
    assert parse_reply("getMe", 200, b'{"ok": true, "result": {"id": 1}}') == {"id": 1}
    with pytest.raises(ApiError) as raised:
        parse_reply("sendMessage", *error(429, "Too Many Requests: retry after 7", 7))
    assert (raised.value.status, raised.value.retry_after) == (429, 7.0)
    assert str(raised.value) == "sendMessage: 429 Too Many Requests: retry after 7"
    with pytest.raises(BadReply):
        parse_reply("getUpdates", 200, b"<html>")
    with pytest.raises(ApiError) as raised:
        parse_reply("getUpdates", 502, b"<html>Bad Gateway</html>")
    assert raised.value.status == 502 and not isinstance(raised.value, BadReply)


# Sending, on a clock

@pytest_twisted.async_yield_fixture
async def sending(api: BotAPI):
    """A connector that is only asked to send, with a Clock for its pauses and timeouts."""
    clock = Clock()
    c = TelegramConnector(reactor, config(api), None, None, environ={}, clock=clock)
    yield clock, c
    await c.http.close()


def waiting(clock: Clock, delay: float) -> bool:
    return any(abs(call.getTime() - clock.seconds() - delay) < 1e-6 for call in clock.getDelayedCalls())


@pytest_twisted.inlineCallbacks
def test_a_429_waits_retry_after_on_the_clock_then_sends_that_part_again(api: BotAPI, sending) -> None:
    clock, c = sending
    api.fail_next("sendMessage", None, error(429, "Too Many Requests: retry after 5", 5))
    first, second = "a" * 4000, "b" * 100
    d = c.send_text("42", f"{first}\n\n{second}", "reply:1")
    yield until(lambda: waiting(clock, 5), what="a 5 s pause")
    clock.advance(4.9)
    assert api.calls["sendMessage"] == 2 and api.texts() == [first]
    clock.advance(0.1)
    yield d
    assert api.calls["sendMessage"] == 3 and api.texts() == [first, second]
    assert api.sent[0]["chat_id"] == 42


@pytest_twisted.inlineCallbacks
def test_a_long_retry_after_fails_the_send_for_the_outbox_to_retry(api: BotAPI, sending) -> None:
    _, c = sending
    api.fail_next("sendMessage", error(429, "Too Many Requests: retry after 3600", 3600))
    with pytest.raises(ApiError) as raised:
        yield c.send_text("42", "hi", "k")
    assert raised.value.status == 429 and api.calls["sendMessage"] == 1


@pytest.mark.parametrize("status, description", [
    (400, "Bad Request: chat not found"), (403, "Forbidden: bot was blocked by the user")])
@pytest_twisted.inlineCallbacks
def test_a_refused_send_raises(api: BotAPI, sending, status: int, description: str) -> None:
    _, c = sending
    api.fail_next("sendMessage", error(status, description))
    with pytest.raises(ApiError) as raised:
        yield c.send_text("42", "hi", "k")
    assert raised.value.status == status and TOKEN not in str(raised.value)


@pytest_twisted.inlineCallbacks
def test_a_retried_send_resumes_after_the_parts_already_sent(api: BotAPI, sending) -> None:
    _, c = sending
    parts = ["x" * 4000, "y" * 4000, "z" * 4000]
    api.fail_next("sendMessage", None, error(500, "Internal Server Error"))
    with pytest.raises(ApiError):
        yield c.send_text("42", "\n\n".join(parts), "reply:9")
    assert api.texts() == parts[:1]
    yield c.send_text("42", "\n\n".join(parts), "reply:9")
    assert api.texts() == parts


def test_a_polling_connector_has_no_webhook(api: BotAPI, sending) -> None:
    _, c = sending
    request = DummyRequest([b""])
    request.method = b"POST"
    request.requestHeaders.setRawHeaders(b"X-Telegram-Bot-Api-Secret-Token", [SECRET.encode()])
    assert c.webhook(request) == b"" and request.responseCode == 404


@pytest_twisted.inlineCallbacks
def test_a_request_without_an_answer_times_out(api: BotAPI, sending) -> None:
    clock, c = sending
    api.stall = True
    d = c.send_text("42", "hi", "k")
    yield until(lambda: api.calls["sendMessage"] == 1, what="the request")
    clock.advance(REQUEST_TIMEOUT)
    with pytest.raises(TimeoutError):
        yield d


# Polling, through the whole message path

@pytest_twisted.inlineCallbacks
def test_a_message_is_answered_and_its_offset_confirmed_and_stored(api: BotAPI, harnesses) -> None:
    h = harnesses()
    c = start(h, api)
    api.push(text_update(42, "/help@other_bot"))
    uid = api.push(text_update(42, "/start@openclaw_test_bot", first_name="Ann"))
    yield until(lambda: api.texts(42), what="a reply")
    assert api.texts(42) == [GREETING]
    history = yield h.store.history("telegram:42", 10)
    assert [(m["role"], m["text"]) for m in history] == [("user", "/start"), ("assistant", GREETING)]
    assert (yield h.store.get_state(OFFSET_KEY)) == uid + 1
    yield until(lambda: api.offsets[-1] == uid + 1, what="the batch confirmed")
    assert c.is_connected() and c.health()["mode"] == "polling" and c.reconnects == 0
    api.push(text_update(42, "what's up?"))
    yield until(lambda: len(api.texts(42)) == 2, what="a second reply")
    assert api.texts(42)[1] == NO_MODEL


@pytest_twisted.inlineCallbacks
def test_each_message_is_its_own_eliot_task_from_receive_to_sent(api: BotAPI, harnesses, eliot_logger) -> None:
    h = harnesses()
    start(h, api)
    api.push(text_update(42, "/help"))
    api.push(text_update(42, "/status"))
    yield until(lambda: answered(eliot_logger.messages, "telegram", 2), what="two answered tasks")
    assert_one_task_per_message(eliot_logger.messages, "telegram", 2)


@pytest_twisted.inlineCallbacks
def test_eliot_tree_draws_a_telegram_message_as_its_own_tree_from_receive_to_sent(
    api: BotAPI, harnesses, tmp_path: Path, eliot_logger,
) -> None:
    logging = LoggingService(str(tmp_path), "info")
    logging.startService()
    try:
        start(harnesses(), api)
        api.push(text_update(42, "/help"))
        yield until(lambda: answered(eliot_logger.messages, "telegram", 1), what="an answered task")
    finally:
        logging.stopService()
    task = one_task(eliot_logger.messages, "telegram")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "eliot-tree"), "--color", "never", "-u", task,
         str(tmp_path / "logs" / "combined.log")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line and line[0].isalnum()] == [task]  # one tree, this message's
    drawn = [next((i for i, line in enumerate(lines) if node in line), -1) for node in (
        "openclaw:connector:inbound/1 ⇒ started", "openclaw:message/2/1 ⇒ started",
        "openclaw:outbox:deliver/", "openclaw:connector:send/", "openclaw:connector:send/")]
    assert -1 not in drawn and drawn == sorted(drawn), result.stdout
    assert "connection_task:" in result.stdout and "verdict: accepted" in result.stdout
    assert sum("openclaw:connector:send/" in line and "⇒ succeeded" in line for line in lines) == 1


@pytest_twisted.inlineCallbacks
def test_a_server_that_closes_the_connection_after_every_response_gets_every_message_answered(
        api: BotAPI, harnesses) -> None:
    api.close_after_response = True
    h = harnesses()
    with eliot_messages() as messages:
        c = start(h, api)
        for n in range(6):
            api.push(text_update(42, f"/start {n}" if n % 2 else "/start"))
            yield until(lambda: len(api.texts(42)) == n + 1, timeout=5, what=f"reply {n + 1}")
        # Polls on connections the server had closed were sent again, not counted as lost.
        yield until(lambda: api.calls["getUpdates"] >= 8, what="polling on")
    assert c.is_connected() and c.reconnects == 0 and c.health()["last_error"] is None
    assert not [m for m in messages if m.get("message_type") == "openclaw:connector:reconnect"
                and m.get("connector") == "telegram"]
    assert api.dropped > 0  # requests on connections the server was closing did happen


@pytest_twisted.inlineCallbacks
def test_an_error_body_quoting_the_token_reaches_the_store_without_it(api: BotAPI, harnesses) -> None:
    from openclaw.events import OutboxItem

    h = harnesses()
    start(h, api)
    quoted = base64.b64encode(TOKEN.encode()).decode()
    api.fail_next("sendMessage", error(400, f"Bad Request: bot{TOKEN} is not in this chat ({quoted})"))
    yield h.store.enqueue_outbox(OutboxItem(session_id="telegram:42", channel="telegram", text="hi",
                                            dedupe_key="echo:1", created_at=0.0, next_attempt=0.0))
    h.outbox.kick()
    yield until(lambda: api.calls["sendMessage"] >= 1, what="the send")
    reads: list = []

    def stored() -> bool:
        h.store.due_outbox(2e9, 10).addCallback(reads.append)  # read as due far in the future
        return any(r.last_error for rows in reads for r in rows)

    yield until(stored, what="the delivery error stored")
    error_text = next(r.last_error for rows in reads for r in rows if r.last_error)
    assert "Bad Request: bot<redacted> is not in this chat (<redacted>)" in error_text
    assert TOKEN not in error_text and quoted.rstrip("=") not in error_text


@pytest_twisted.inlineCallbacks
def test_a_long_reply_goes_out_in_parts_within_4096_utf16_units(api: BotAPI, harnesses) -> None:
    from openclaw.events import OutboxItem

    h = harnesses()
    start(h, api)
    # Emoji count 2 UTF-16 units: cut by characters, the parts would be refused.
    text = "\n".join(f"line {n} " + "😀" * 30 for n in range(200))
    assert len(text) < 2 * 4096 and utf16_length(text) > 3 * 4096
    yield h.store.enqueue_outbox(OutboxItem(session_id="telegram:42", channel="telegram", text=text,
                                            dedupe_key="long:1", created_at=0.0, next_attempt=0.0))
    h.outbox.kick()
    yield until(lambda: "\n".join(api.texts(42)) == text, what="every part delivered")
    assert len(api.texts(42)) >= 4 and all(utf16_length(t) <= 4096 for t in api.texts(42))


@pytest_twisted.inlineCallbacks
def test_a_server_restart_mid_session_loses_nothing(api: BotAPI, harnesses) -> None:
    h = harnesses()
    c = start(h, api)
    api.push(text_update(42, "/start"))
    yield until(lambda: api.texts(42), what="the first reply")
    yield api.stop()
    api.push(text_update(42, "/help"))  # arrives while openclaw cannot reach Telegram
    yield until(lambda: c.reconnects >= 2, what="failed reconnects")
    api.start()
    yield until(lambda: len(api.texts(42)) == 2, timeout=10, what="the reply after the restart")
    assert "/status" in api.texts(42)[1]
    yield until(c.is_connected, what="connected again")


@pytest_twisted.inlineCallbacks
def test_a_stalled_server_is_abandoned_by_the_watchdog_and_polling_resumes(api: BotAPI, harnesses) -> None:
    h = harnesses()
    c = start(h, api, poll_timeout=0.2, stall_timeout=0.5)
    yield until(lambda: api.calls["getUpdates"] >= 1, what="polling")
    stalls = counted("openclaw_connector_reconnects_total", reason="stall")
    api.stall = True
    yield until(lambda: counted("openclaw_connector_reconnects_total", reason="stall") > stalls,
                what="the watchdog")
    assert c.last_error == "no data for 0.5s"
    api.stall = False
    api.push(text_update(42, "/help"))
    yield until(lambda: api.texts(42), timeout=10, what="a reply after the stall")
    assert c.is_connected()


@pytest.mark.parametrize("status, reason", [(401, "401 Unauthorized"), (404, "404 Not Found")])
@pytest_twisted.inlineCallbacks
def test_a_rejected_token_fails_for_good_after_one_attempt(api: BotAPI, harnesses, status: int,
                                                           reason: str) -> None:
    h = harnesses()
    api.reject = status
    c = start(h, api)
    yield until(lambda: c.state == FAILED, what="failed")
    assert c.last_error == f"telegram rejected the bot token ({reason})"
    assert dict(api.calls) == {"getMe": 1} and c.reconnects == 0 and c._timer is None
    yield until(lambda: h.pushed, what="the owner alerted")
    assert "telegram connector stopped" in h.pushed[0][2]["message"]


@pytest_twisted.inlineCallbacks
def test_a_token_revoked_mid_session_fails_for_good(api: BotAPI, harnesses) -> None:
    h = harnesses()
    c = start(h, api, poll_timeout=0.1)
    yield until(lambda: api.calls["getUpdates"] >= 1, what="polling")
    api.reject = 401
    yield until(lambda: c.state == FAILED, what="failed")
    assert api.calls["getMe"] == 1 and c.reconnects == 0


@pytest_twisted.inlineCallbacks
def test_a_missing_token_fails_without_calling_telegram(api: BotAPI, harnesses) -> None:
    h = harnesses()
    c = start(h, api, token="")
    yield until(lambda: c.state == FAILED, what="failed")
    assert "TELEGRAM_BOT_TOKEN" in c.last_error and not api.calls


@pytest_twisted.inlineCallbacks
def test_a_conflict_backs_off_and_polling_goes_on(api: BotAPI, harnesses) -> None:
    h = harnesses()
    api.fail_next("getUpdates", error(409, "Conflict: terminated by other getUpdates request"))
    c = start(h, api)
    yield until(lambda: c.reconnects == 1, what="a reconnect")
    assert "409" in c.last_error and c.state != FAILED
    api.push(text_update(42, "/help"))
    yield until(lambda: api.texts(42), what="a reply")


@pytest_twisted.inlineCallbacks
def test_malformed_answers_and_updates_are_counted_and_skipped(api: BotAPI, harnesses) -> None:
    h = harnesses()
    before = malformed()
    api.fail_next("getUpdates", (200, b"<html>not json"), ok(["junk", {"update_id": "7"}]))
    c = start(h, api)
    yield until(lambda: c.reconnects == 1 and api.calls["getUpdates"] >= 2, what="garbage read")
    good = text_update(42, "x")["message"]
    api.push({"message": {**good, "chat": {"id": "42"}}})
    api.push({"message": "hello"})
    api.push({"message": {key: v for key, v in good.items() if key != "from"}})
    api.push({"message": {key: v for key, v in good.items() if key != "text"} | {"sticker": {"file_id": "s"}}})
    last = api.push(text_update(42, "/help"))
    yield until(lambda: api.texts(42), what="the good message answered")
    assert malformed() - before == 6
    assert (yield h.store.get_state(OFFSET_KEY)) == last + 1
    assert c.is_connected() and c.reconnects == 1
    history = yield h.store.history("telegram:42", 10)
    assert history[0]["text"] == "/help"


@pytest_twisted.inlineCallbacks
def test_an_unknown_sender_is_refused_and_nothing_is_recorded(api: BotAPI, harnesses) -> None:
    h = harnesses()
    start(h, api)
    uid = api.push(text_update(7, "hello"))
    yield until(lambda: api.texts(7), what="the refusal")
    assert api.texts(7) == [NOT_ALLOWED_REPLY]
    offsets: list = []

    def offset_saved() -> bool:  # the refusal goes out before the batch's offset is saved
        h.store.get_state(OFFSET_KEY).addCallback(offsets.append)
        return uid + 1 in offsets

    yield until(offset_saved, what="the offset past the refused update")
    assert (yield h.store.history("telegram:7", 10)) == []


@pytest_twisted.inlineCallbacks
def test_an_approved_pairing_code_lets_the_sender_through(api: BotAPI, harnesses) -> None:
    h = harnesses()
    start(h, api, allow_from=(), pairing=True)
    api.push(text_update(7, "hello", first_name="Bob"))
    yield until(lambda: api.texts(7), what="the pairing code")
    code = re.search(r"approve (\d{6})", api.texts(7)[0]).group(1)
    assert (yield approve(h.store, code, reactor.seconds())) == "telegram:7"
    api.push(text_update(7, "/help"))
    yield until(lambda: len(api.texts(7)) == 2, what="an answer")
    assert "/status" in api.texts(7)[1]


@pytest_twisted.inlineCallbacks
def test_a_batch_refused_while_draining_is_read_again_after_restart(api: BotAPI, harnesses) -> None:
    h = harnesses()
    start(h, api)
    first = api.push(text_update(42, "/start"))
    yield until(lambda: api.texts(42), what="the first reply")
    received = counted("openclaw_connector_messages_total", direction="in")
    h.pipeline.refuse_new()
    second = api.push(text_update(42, "/help"))
    yield until(lambda: counted("openclaw_connector_messages_total", direction="in") > received,
                what="the update refused")
    assert (yield h.store.get_state(OFFSET_KEY)) == first + 1 and second + 1 not in api.offsets
    yield h.stop()
    polls = len(api.offsets)
    again = harnesses()
    start(again, api)
    yield until(lambda: len(api.texts(42)) == 2, what="the refused message answered after restart")
    assert api.offsets[polls] == first + 1 and "/status" in api.texts(42)[1]


# Webhook

@pytest_twisted.inlineCallbacks
def test_the_webhook_needs_the_secret_and_answers_once_durable(api: BotAPI, harnesses) -> None:
    h = harnesses()
    c = start(h, api, mode="webhook", webhook_secret=SECRET)
    web = WebService(reactor, h.runtime, "tcp:0:interface=127.0.0.1", webhooks={"telegram": c.webhook})
    web.startService()
    url = f"http://127.0.0.1:{web.port.getHost().port}/webhooks/telegram"

    def post(body: Any, secret: str | None = SECRET) -> Any:
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return treq.post(url, data=data, headers=headers, persistent=False)

    try:
        yield until(c.is_connected, what="getMe")
        update = {"update_id": 500, **text_update(42, "/help")}
        update["message"]["message_id"] = 9
        for secret in (None, "wrong", SECRET[:-1]):
            response = yield post(update, secret)
            assert response.code == 401
            yield response.content()
        assert (yield h.store.history("telegram:42", 10)) == []
        response = yield post(update)
        assert response.code == 200
        yield response.content()
        assert [m["text"] for m in (yield h.store.history("telegram:42", 10))][:1] == ["/help"]
        yield until(lambda: api.texts(42), what="the reply")
        before = malformed()
        response = yield post(b"{not json")
        assert response.code == 200 and malformed() == before + 1
        yield response.content()
        h.pipeline.refuse_new()
        later = {"update_id": 501, **text_update(42, "/status")}
        later["message"]["message_id"] = 10
        response = yield post(later)
        assert response.code == 503
        yield response.content()
        assert api.calls["getUpdates"] == 0 and c.health()["mode"] == "webhook"
    finally:
        yield web.stopService()


@pytest_twisted.inlineCallbacks
def test_the_fake_api_ends_a_held_poll_with_409_when_a_second_poller_comes_and_records_both(api: BotAPI) -> None:
    url = f"{api.url}/bot{TOKEN}/getUpdates"
    first = treq.post(url, json={"timeout": 30}, persistent=False)
    yield until(lambda: len(api.polls) == 1)
    second = treq.post(url, json={"timeout": 30}, persistent=False)
    answer = yield first
    body = yield answer.json()
    assert answer.code == 409 and "terminated by other getUpdates request" in body["description"]
    assert api.max_pollers == 2
    api.push(text_update(42, "hi"))
    answer = yield second
    assert answer.code == 200 and [u["message"]["text"] for u in (yield answer.json())["result"]] == ["hi"]
    assert [p.outcome for p in api.polls] == ["conflict", "answered"]
    assert api.polls[0].peer != api.polls[1].peer  # two connections, two pollers
    end = api.polls[1].end
    assert api.poll_gaps(api.polls[0].start, end) == []
    assert api.poll_gaps(api.polls[0].start, end + 1) == [(end, end + 1)]
