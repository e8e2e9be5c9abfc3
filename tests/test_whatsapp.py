"""The WhatsApp Cloud API connector against a local Graph API, with Meta's webhooks POSTed to the real web service."""

from __future__ import annotations

import json
from dataclasses import replace
import re
from typing import Any
from urllib.parse import urlencode

import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from openclaw import metrics
from openclaw.agent.rules import help_text
from openclaw.connectors.access import NOT_ALLOWED_REPLY, approve
from openclaw.connectors.base import CONNECTED, FAILED, NotConnected
from openclaw.config.connectors import WhatsAppConfig
from openclaw.connectors.whatsapp import (
    TEXT_LIMIT,
    GraphError,
    WhatsAppConnector,
    parse_notification,
    signature_ok,
)
from openclaw.events import OutboxItem
from openclaw.web import WebService
from tests.connector_harness import Harness
from tests.eliot_tasks import answered, assert_one_task_per_message
from tests.llm_servers import eliot_messages
from tests.strategies import whatsapp_values
from tests.whatsapp_server import (
    Canned,
    GraphServer,
    graph_error,
    sign,
    statuses,
    text_message,
    until,
)

TOKEN = "EAAG-test-TOKEN-0123456789"
SECRET = "app-secret-0123456789"
VERIFY = "verify-me-please"
PID = "106540352242922"
ANN = "15550001111"


class Rig:
    """A Graph API, the harness around the connector, and the web service serving its webhook."""

    def __init__(self, home: str, **config: Any) -> None:
        self.graph = GraphServer(TOKEN, PID).start()
        self.harness = Harness(home)
        settings = {"enabled": True, "token": TOKEN, "phone_number_id": PID, "app_secret": SECRET,
                    "verify_token": VERIFY, "api_url": self.graph.url, "allow_from": (ANN,), **config}
        self.connector: WhatsAppConnector = self.harness.start(lambda h: WhatsAppConnector(
            reactor, WhatsAppConfig(**settings), h.pipeline, h.store, h.notifier, environ={}, rng=lambda: 0.0))
        self.web = WebService(reactor, self.harness.runtime, "tcp:0:interface=127.0.0.1",
                              webhooks={"whatsapp": self.connector.webhook})
        self.web.startService()
        self.url = f"http://127.0.0.1:{self.web.port.getHost().port}/webhooks/whatsapp"

    @inlineCallbacks
    def post(self, body: Any, secret: str | None = SECRET) -> Any:
        """POST ``body`` (a dict as JSON, or raw bytes) signed with ``secret``; :return: ``(code, body)``."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Hub-Signature-256"] = sign(secret, raw)
        response = yield treq.post(self.url, data=raw, headers=headers, persistent=False)
        return response.code, (yield response.content())

    @inlineCallbacks
    def get(self, **params: str) -> Any:
        response = yield treq.get(self.url + "?" + urlencode(params), persistent=False)
        return response.code, (yield response.content())

    @inlineCallbacks
    def stop(self) -> Any:
        yield self.web.stopService()
        yield self.harness.stop()
        yield self.graph.stop()


def refused(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "openclaw_connector_refused_total", {"connector": "whatsapp", "reason": reason}) or 0.0


def texts(graph: GraphServer, to: str = ANN) -> list[str]:
    return [b["text"]["body"] for b in graph.sent if b["to"] == to]


@pytest_twisted.inlineCallbacks
def test_the_subscription_check_echoes_the_challenge_only_for_the_verify_token(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        code, body = yield rig.get(**{"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"})
        assert (code, body) == (200, b"1158201444")
        for params in ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
                       {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"},
                       {"hub.challenge": "1"}):
            code, body = yield rig.get(**params)
            assert code == 403 and b"1" not in body
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_an_unset_verify_token_verifies_nothing(tmp_path) -> None:
    rig = Rig(str(tmp_path), verify_token="")
    try:
        code, _ = yield rig.get(**{"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "7"})
        assert code == 403
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_signed_message_is_answered_through_the_graph_api(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        yield until(lambda: rig.connector.state == CONNECTED)
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.IN1", "/help", name="Ann Example"))
        assert code == 200
        yield until(lambda: rig.graph.sent)
        (sent,) = rig.graph.sent
        assert sent["messaging_product"] == "whatsapp" and sent["recipient_type"] == "individual"
        assert sent["to"] == ANN and sent["type"] == "text" and "/status" in sent["text"]["body"]
        post = [r for r in rig.graph.requests if r.method == "POST"][0]
        assert post.path == f"/v21.0/{PID}/messages" and post.headers["authorization"] == f"Bearer {TOKEN}"
        history = yield rig.harness.store.history(f"whatsapp:{ANN}", 10)
        assert [m["role"] for m in history] == ["user", "assistant"] and history[0]["text"] == "/help"
        sessions = yield rig.harness.store.sessions()
        assert [s["session_id"] for s in sessions] == [f"whatsapp:{ANN}"]
        assert rig.graph.count("GET") == 1
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_each_message_is_its_own_eliot_task_from_receive_to_sent(tmp_path, eliot_logger) -> None:
    rig = Rig(str(tmp_path))
    try:
        yield until(lambda: rig.connector.state == CONNECTED)
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.IN1", "/help"))
        assert code == 200
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.IN2", "/status"))
        assert code == 200
        yield until(lambda: answered(eliot_logger.messages, "whatsapp", 2), what="two answered tasks")
        assert_one_task_per_message(eliot_logger.messages, "whatsapp", 2)
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_bad_signature_is_refused_and_nothing_is_recorded(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    before = refused("bad_signature")
    try:
        with eliot_messages() as messages:
            for secret in ("another-secret", None):
                code, _ = yield rig.post(text_message(PID, ANN, "wamid.FORGED", "/help"), secret=secret)
                assert code == 403
        assert refused("bad_signature") == before + 2
        assert SECRET not in json.dumps(messages, default=str)
        history = yield rig.harness.store.history(f"whatsapp:{ANN}", 10)
        assert history == []
        # The real one afterwards is the only one answered: the forged ones were never queued.
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.REAL", "/help"))
        assert code == 200
        yield until(lambda: rig.graph.sent)
        history = yield rig.harness.store.history(f"whatsapp:{ANN}", 10)
        assert len(history) == 2 and len(rig.graph.sent) == 1
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_long_replies_are_split_at_the_text_limit(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        paragraphs = [f"Paragraph {n}: " + "word " * 300 for n in range(6)]
        text = "\n\n".join(p.strip() for p in paragraphs)
        assert len(text) > 2 * TEXT_LIMIT
        done = yield rig.connector.deliver(OutboxItem(session_id=f"whatsapp:{ANN}", channel="whatsapp",
                                                      text=text, dedupe_key="long"))
        assert done is True
        parts = texts(rig.graph)
        assert len(parts) == 3 and all(len(p) <= TEXT_LIMIT for p in parts)
        assert " ".join(parts).split() == text.split()
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_rate_limits_are_waited_out_then_the_send_goes_through(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        rig.graph.script = [graph_error(400, 130429, "Rate limit hit"),
                            graph_error(429, 4, "Application request limit reached", {"Retry-After": "0"})]
        yield rig.connector.send_text(ANN, "hello", "k1")
        assert texts(rig.graph) == ["hello"] and rig.graph.count("POST") == 3
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_send_rate_limited_too_long_fails_for_the_outbox_to_retry(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        rig.graph.script = [graph_error(400, 131056, "Pair rate limit hit", {"Retry-After": "0"})] * 5
        try:
            yield rig.connector.send_text(ANN, "hello", "k1")
        except GraphError as e:
            assert e.code == 131056
        else:
            raise AssertionError("the send should have failed")
        assert rig.graph.sent == [] and rig.graph.count("POST") == 5
        yield rig.connector.send_text(ANN, "hello", "k1")
        assert texts(rig.graph) == ["hello"]
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_retried_split_send_resumes_after_the_parts_already_sent(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        text = "\n\n".join(c * 4000 for c in "abc")
        rig.graph.script = [Canned(200, {"messages": [{"id": "wamid.1"}]}), graph_error(500, 2, "Service unavailable")]
        try:
            yield rig.connector.send_text(ANN, text, "k2")
        except GraphError:
            pass
        else:
            raise AssertionError("the second part should have failed")
        yield rig.connector.send_text(ANN, text, "k2")
        assert texts(rig.graph) == ["b" * 4000, "c" * 4000]  # the first went out under the script
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_statuses_are_journalled_and_failures_logged(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        with eliot_messages() as messages:
            code, _ = yield rig.post(statuses(PID, ("wamid.OUT1", "sent", ANN), ("wamid.OUT1", "delivered", ANN),
                                              ("wamid.OUT2", "failed", ANN)))
        assert code == 200
        records = yield rig.harness.store.journal("whatsapp_status", 0)
        assert [(r["payload"]["message_id"], r["payload"]["status"]) for r in records] == [
            ("wamid.OUT1", "sent"), ("wamid.OUT1", "delivered"), ("wamid.OUT2", "failed")]
        assert records[2]["payload"]["errors"] == [{"code": 131047, "title": "Re-engagement message"}]
        failed = [m for m in messages if m.get("message_type") == "openclaw:whatsapp:delivery-failed"]
        assert len(failed) == 1 and failed[0]["log_level"] == "warn" and failed[0]["message_id"] == "wamid.OUT2"
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_malformed_json_is_400_and_odd_shapes_are_skipped_with_200(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    malformed = refused("malformed")
    try:
        code, _ = yield rig.post(b"{not json")
        assert code == 400 and refused("malformed") == malformed + 1
        image = text_message(PID, ANN, "wamid.IMG", "x")
        image["entry"][0]["changes"][0]["value"]["messages"][0] = {
            "from": ANN, "id": "wamid.IMG", "type": "image", "image": {"id": "m1"}}
        no_id = text_message(PID, ANN, "", "hi")
        other_number = text_message("999", ANN, "wamid.OTHER", "/help")
        for body in ({"object": "page", "entry": []}, {"object": "whatsapp_business_account", "entry": "x"},
                     [1, 2], image, no_id, other_number):
            code, _ = yield rig.post(body)
            assert code == 200
        assert refused("malformed") == malformed + 2
        history = yield rig.harness.store.history(f"whatsapp:{ANN}", 10)
        assert history == []
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.OK", "/help"))
        yield until(lambda: rig.graph.sent)
        assert code == 200 and rig.connector.state == CONNECTED
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_redelivered_webhook_is_answered_once(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        for wamid in ("wamid.A", "wamid.A", "wamid.B"):
            code, _ = yield rig.post(text_message(PID, ANN, wamid, "/sessions" if wamid == "wamid.B" else "/help"))
            assert code == 200
        yield until(lambda: len(rig.graph.sent) >= 2)
        # Replies go out in order per chat: a second answer to A would come before B's.
        assert texts(rig.graph) == [help_text(), f"1 session(s):\nwhatsapp:{ANN}"]
        history = yield rig.harness.store.history(f"whatsapp:{ANN}", 10)
        assert len(history) == 4
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_an_unknown_sender_is_refused_with_a_reply(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    stranger = "15559999999"
    before = refused("not_allowed")
    try:
        code, _ = yield rig.post(text_message(PID, stranger, "wamid.S1", "hello"))
        assert code == 200
        assert texts(rig.graph, stranger) == [NOT_ALLOWED_REPLY]  # sent before the webhook was answered
        assert refused("not_allowed") == before + 1
        history = yield rig.harness.store.history(f"whatsapp:{stranger}", 10)
        assert history == []
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_paired_sender_gets_through_after_approval(tmp_path) -> None:
    rig = Rig(str(tmp_path), allow_from=(), pairing=True)
    bob = "15552222222"
    try:
        yield rig.post(text_message(PID, bob, "wamid.P1", "hi", name="Bob"))
        (reply,) = texts(rig.graph, bob)
        code = re.search(r"approve (\d{6})", reply).group(1)
        approved = yield approve(rig.harness.store, code, reactor.seconds())
        assert approved == f"whatsapp:{bob}"
        yield rig.post(text_message(PID, bob, "wamid.P2", "/help", name="Bob"))
        yield until(lambda: len(texts(rig.graph, bob)) == 2)
        assert "/status" in texts(rig.graph, bob)[1]
        sessions = yield rig.harness.store.sessions()
        assert [s["session_id"] for s in sessions] == [f"whatsapp:{bob}"]
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_an_invalid_token_fails_for_good_without_retrying(tmp_path) -> None:
    rig = Rig(str(tmp_path), token="EAAG-revoked")
    try:
        yield until(lambda: rig.connector.state == FAILED)
        yield until(lambda: rig.harness.pushed)  # the owner was alerted
        assert "190" in rig.connector.last_error and "EAAG-revoked" not in rig.connector.last_error
        assert rig.connector._timer is None and rig.graph.count("GET") == 1
        assert rig.connector.health()["state"] == FAILED
        try:
            yield rig.connector.deliver(OutboxItem(session_id=f"whatsapp:{ANN}", channel="whatsapp", text="x",
                                                   dedupe_key="d"))
        except NotConnected:
            pass
        else:
            raise AssertionError("a failed connector must not send")
        assert rig.graph.count("POST") == 0
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_missing_credentials_fail_at_once_without_asking_meta(tmp_path) -> None:
    rig = Rig(str(tmp_path), app_secret="")
    try:
        assert rig.connector.state == FAILED and "app_secret" in rig.connector.last_error
        assert rig.graph.requests == []
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_token_revoked_while_running_fails_the_connector_on_send(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        yield until(lambda: rig.connector.state == CONNECTED)
        rig.graph.token = "something-else"
        with eliot_messages() as messages:
            try:
                yield rig.connector.send_text(ANN, "hello", "k")
            except GraphError as e:
                assert e.code == 190
            else:
                raise AssertionError("the send should have failed")
        assert messages and TOKEN not in json.dumps(messages, default=str)
        assert rig.connector.state == FAILED and rig.graph.count("GET") == 1
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_reply_sent_while_the_graph_api_is_down_is_delivered_when_it_is_back(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    failures = metrics.REGISTRY.get_sample_value(
        "openclaw_connector_send_failures_total", {"connector": "whatsapp"}) or 0.0
    try:
        yield until(lambda: rig.connector.state == CONNECTED)
        port = rig.graph.port_number
        yield rig.graph.stop()
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.DOWN", "/help"))
        assert code == 200  # recorded: the reply waits in the outbox
        yield until(lambda: (metrics.REGISTRY.get_sample_value(
            "openclaw_connector_send_failures_total", {"connector": "whatsapp"}) or 0.0) > failures)
        rig.graph.start(port)
        yield until(lambda: rig.graph.sent, timeout=10)
        assert len(texts(rig.graph)) == 1 and rig.connector.state == CONNECTED
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_draining_daemon_answers_503_so_meta_redelivers(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        rig.harness.pipeline.refuse_new()
        code, _ = yield rig.post(text_message(PID, ANN, "wamid.LATE", "/help"))
        assert code == 503
        history = yield rig.harness.store.history(f"whatsapp:{ANN}", 10)
        assert history == []
    finally:
        yield rig.stop()


@pytest_twisted.inlineCallbacks
def test_a_busy_daemon_answers_503_records_nothing_and_the_redelivery_is_answered(tmp_path) -> None:
    rig = Rig(str(tmp_path))
    try:
        limits = rig.harness.pipeline.limits
        rig.harness.pipeline.limits = replace(limits, max_pending=0)
        note = text_message(PID, ANN, "wamid.BUSY", "/help")
        code, body = yield rig.post(note)
        assert code == 503 and json.loads(body) == {"error": "busy"}
        assert (yield rig.harness.store.history(f"whatsapp:{ANN}", 10)) == []
        rig.harness.pipeline.limits = limits
        code, _ = yield rig.post(note)  # Meta's retry
        assert code == 200
        yield until(lambda: texts(rig.graph))
        assert len(texts(rig.graph)) == 1 and "/status" in texts(rig.graph)[0]
    finally:
        yield rig.stop()


@given(whatsapp_values())
def test_parsing_any_json_never_raises(data: Any) -> None:
    note = parse_notification(data, PID)
    assert all(m.text and m.wa_id and m.message_id for m in note.messages)


@given(st.text(min_size=1, max_size=20), st.binary(max_size=200), st.binary(max_size=200))
def test_only_the_body_signed_with_the_secret_passes(secret: str, body: bytes, other: bytes) -> None:
    header = sign(secret, body).encode()
    assert signature_ok(secret, body, header)
    assert signature_ok(secret, body, header.upper().replace(b"SHA256=", b"sha256="))
    assert signature_ok(secret, other, header) == (other == body)
    assert not signature_ok("", body, sign("", body).encode())
    assert not signature_ok(secret, body, None) and not signature_ok(secret, body, header[7:])
