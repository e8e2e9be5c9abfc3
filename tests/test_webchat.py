"""Webchat through the gateway: chat.send -> durable -> lane -> rules brain -> chat.reply."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer

from openclaw.events import MESSAGE_RECEIVED, Event
from tests import llm_servers, wsclient
from tests.daemon import RunningDaemon, daemon_config


@defer.inlineCallbacks
def reply_for(client, event_id: str):
    """Read frames until the chat.reply answering ``event_id``."""
    while True:
        frame = yield client.next()
        if frame.get("type") == "event" and frame["event"] == "chat.reply" and frame["payload"]["reply_to"] == event_id:
            return frame["payload"]


@pytest_twisted.inlineCallbacks
def test_send_is_acknowledged_then_answered_by_the_rules_brain(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    ack = yield client.request("chat.send", {"text": "/help"})
    assert ack["ok"] and ack["payload"]["session"] == "webchat:test" and ack["payload"]["duplicate"] is False
    reply = yield reply_for(client, ack["payload"]["event_id"])
    assert reply["session"] == "webchat:test" and "/status" in reply["text"]
    free = yield client.request("chat.send", {"text": "what's the weather?"})
    reply = yield reply_for(client, free["payload"]["event_id"])
    assert "brain.providers" in reply["text"]
    history = yield client.request("chat.history", {"limit": 10})
    roles = [m["role"] for m in history["payload"]["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert history["payload"]["messages"][0]["text"] == "/help"
    sessions = yield client.request("sessions.list")
    assert "webchat:test" in [s["session_id"] for s in sessions["payload"]["sessions"]]
    yield client.close()
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_consecutive_messages_are_all_answered_in_order(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    ids = []
    for n in range(5):
        client.send("chat.send", {"text": f"/status {n}"}, request_id=f"m{n}")
    replies = []
    while len(replies) < 5 or len(ids) < 5:
        frame = yield client.next()
        if frame["type"] == "res":
            ids.append(frame["payload"]["event_id"])
        elif frame["event"] == "chat.reply":
            replies.append(frame["payload"]["reply_to"])
    assert replies == ids
    yield client.close()
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_a_repeated_client_msg_id_is_not_processed_twice(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    first = yield client.request("chat.send", {"text": "/help", "client_msg_id": "abc"})
    yield reply_for(client, first["payload"]["event_id"])
    again = yield client.request("chat.send", {"text": "/help", "client_msg_id": "abc"})
    assert again["payload"] == {**first["payload"], "duplicate": True}
    history = yield client.request("chat.history", {})
    assert len(history["payload"]["messages"]) == 2
    yield client.close()
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_replies_wait_for_a_listener_and_go_out_on_subscribe(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    pipeline = daemon.service.getServiceNamed("pipeline")
    event = Event(type=MESSAGE_RECEIVED, source="webchat", session_id="webchat:shared",
                  timestamp=daemon.runtime.clock.seconds(), payload={"text": "/help"})
    event_id, _ = yield pipeline.receive(event)
    yield pipeline.lanes.until_idle()  # answered while nobody listens
    counts = yield pipeline.store.outbox_counts()
    assert counts["pending"] == 1
    listener = yield wsclient.connect(daemon.gateway_port, daemon.token)
    sub = yield listener.request("subscribe", {"session": "webchat:shared"})
    assert sub["payload"] == {"subscribed": "webchat:shared"}
    reply = yield reply_for(listener, event_id)
    assert reply["session"] == "webchat:shared" and "/status" in reply["text"]
    yield listener.close()
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_bad_chat_params_get_precise_errors(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    for params in ({}, {"text": ""}, {"text": 5}, {"text": "hi", "session": "telegram:1"},
                   {"text": "hi", "client_msg_id": 7}):
        reply = yield client.request("chat.send", params)
        assert reply["error"]["code"] == "invalid_field", params
    reply = yield client.request("chat.history", {"limit": 0})
    assert reply["error"]["code"] == "invalid_field"
    yield client.close()
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_a_full_lane_answers_busy(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path), daemon_config(lanes={"max_queue": 1, "max_concurrent": 1}))
    pipeline = daemon.service.getServiceNamed("pipeline")
    pipeline.lanes.pause()  # nothing runs: the queue fills
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    first = yield client.request("chat.send", {"text": "one"})
    assert first["ok"]
    second = yield client.request("chat.send", {"text": "two"})
    assert second["error"]["code"] == "busy"
    yield client.close()
    yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_one_eliot_tree_per_message_from_receive_to_send(tmp_path) -> None:
    import json

    daemon = RunningDaemon(str(tmp_path))
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    ack = yield client.request("chat.send", {"text": "/help"})
    yield reply_for(client, ack["payload"]["event_id"])
    yield client.close()
    yield daemon.stop()
    lines = [json.loads(line) for line in (tmp_path / "logs" / "combined.log").read_text().splitlines()]
    start = next(m for m in lines if m.get("action_type") == "openclaw:message" and m.get("action_status") == "started")
    task = [m for m in lines if m["task_uuid"] == start["task_uuid"]]
    kinds = {m.get("action_type") or m.get("message_type") for m in task}
    assert {"openclaw:message", "openclaw:outbox:deliver"} <= kinds
    end = next(m for m in task if m.get("action_type") == "openclaw:message" and m.get("action_status") == "succeeded")
    answered = next(m for m in task if m.get("message_type") == "openclaw:message:answered")
    assert answered["provider"] == "rules" and answered["reply_length"] > 0 and end["log_level"] == "info"
    assert "/help" not in json.dumps(task)  # message bodies never at info
    assert start["length"] == 5 and start["session_id"] == "webchat:test"


@pytest_twisted.inlineCallbacks
def test_token_usage_is_kept_per_session(tmp_path) -> None:
    llm = llm_servers.FakeLLM().start()
    llm.answer(llm_servers.openai_text("one", prompt_tokens=11, completion_tokens=7),
               llm_servers.openai_text("two", prompt_tokens=20, completion_tokens=3))
    config = daemon_config(brain={"providers": [{"kind": "openai", "model": "m", "base_url": llm.url + "/v1",
                                                 "api_key_env": "TEST_KEY", "max_retries": 0}]})
    daemon = RunningDaemon(str(tmp_path), config, environ={"TEST_KEY": llm_servers.KEY})
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    for text in ("first", "second"):
        ack = yield client.request("chat.send", {"text": text})
        yield reply_for(client, ack["payload"]["event_id"])
    listed = yield client.request("sessions.list")
    [session] = [s for s in listed["payload"]["sessions"] if s["session_id"] == "webchat:test"]
    assert session["usage"] == {"input_tokens": 31, "output_tokens": 10, "replies": 2}
    # A model brain gets the session's history (the rules brain needs none and skips the read).
    texts = [m["content"] for m in llm.requests[1].body["messages"]]
    assert texts[-3:] == ["first", "one", "second"]
    yield client.close()
    yield daemon.stop()
    yield llm.stop()


@pytest_twisted.inlineCallbacks
def test_alerts_made_while_the_chat_was_closed_arrive_on_the_next_subscribe(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path), daemon_config(heartbeat={"target": "webchat:cli-me"}))
    try:
        notifier = daemon.service.getServiceNamed("notifier")
        # Nobody listens: the check's alert and recovery are made anyway.
        yield notifier.notify("alert", "website", "website is DOWN", "check:website:1:alert")
        yield notifier.notify("recovery", "website", "website is back up", "check:website:1:recovery")
        client = yield wsclient.connect(daemon.gateway_port, daemon.token)
        history = yield client.request("chat.history", {"session": "webchat:cli-me", "limit": 10})
        assert [(m["role"], m["text"]) for m in history["payload"]["messages"]] == [
            ("assistant", "website is DOWN"), ("assistant", "website is back up")]
        yield client.request("subscribe", {"session": "webchat:cli-me"})
        alerts = []
        while len(alerts) < 2:
            frame = yield client.next()
            if frame.get("type") == "event" and frame["event"] == "alert":
                alerts.append(frame["payload"])
        assert [(a["kind"], a["check"], a["message"], a["while_away"]) for a in alerts] == [
            ("alert", "website", "website is DOWN", True), ("recovery", "website", "website is back up", True)]
        # Marked sent once the delivery pass is over: not pushed again.
        yield daemon.service.getServiceNamed("outbox").kick()
        counts = yield daemon.service.getServiceNamed("store").outbox_counts()
        assert counts["pending"] == 0 and counts["sent"] == 2
        yield notifier.notify("info", "report", "heard live", "report:x")
        while True:
            frame = yield client.next()
            if frame.get("type") == "event" and frame["event"] == "alert":
                break
        assert frame["payload"]["message"] == "heard live" and frame["payload"]["while_away"] is False
        yield client.close()
    finally:
        yield daemon.stop()
