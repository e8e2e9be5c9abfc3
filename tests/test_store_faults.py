"""
A store that fails for a while: acknowledged messages are answered once it
is back, exactly once, without a restart; meanwhile /health and /readyz say
503 with the store's error and new messages are refused, never acknowledged.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool

from openclaw import metrics
from openclaw.gateway import frames
from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config
from tests.llm_servers import openai_text
from tests.process import TWISTD, clean_env
from tests.waiting import until


def read_only(daemon: RunningDaemon, on: bool) -> defer.Deferred:
    """
    SQLite's own read-only mode on the daemon's connection, set on its worker
    thread between transactions: every transaction fails as on a read-only disk.
    """
    sqlite = daemon.service.getServiceNamed("store").store
    return deferToThreadPool(reactor, sqlite._pool, sqlite._db.execute, f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def model_brain(llm) -> dict:
    """The ``brain`` section of a daemon that asks the fake model (its answers are slow when the test says so)."""
    return {"providers": [{"kind": "openai", "model": "m", "base_url": llm.url, "api_key": "sk-test-0123456789abcdef",
                           "timeout": "30s", "max_retries": 0}]}


@defer.inlineCallbacks
def acknowledged_while_thinking(daemon: RunningDaemon, llm, text: str, answer: str) -> defer.Deferred:
    """A client whose ``text`` is acknowledged while the model takes half a second to ``answer``: the fault's window."""
    client = yield wsclient.connect(daemon.gateway_port, daemon.token)
    llm.answer(openai_text(answer, prompt_tokens=0, completion_tokens=0))
    llm.script[-1].delay = 0.5
    ack = yield client.request("chat.send", {"text": text})
    assert ack["ok"], ack
    yield llm.received(1)
    return client, ack["payload"]["event_id"]


def errors(op: str) -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_store_errors_total", {"op": op}) or 0.0


@pytest_twisted.inlineCallbacks
def test_a_read_only_store_delays_an_acknowledged_reply_and_refuses_new_messages(tmp_path, llm) -> None:
    daemon = RunningDaemon(str(tmp_path), daemon_config(brain=model_brain(llm)))
    try:
        client, event_id = yield acknowledged_while_thinking(daemon, llm, "are you there?", "written once the disk is back")
        yield read_only(daemon, True)  # the reply will not be storable

        failed_before = errors("complete_inbound")
        yield until(lambda: errors("complete_inbound") > failed_before, what="the reply's write failed")
        code, _, body = yield daemon.get("/readyz")
        assert code == 503 and json.loads(body)["store"]["state"] == "failing"
        code, _, body = yield daemon.get("/health")
        health = json.loads(body)
        assert code == 503 and health["status"] == "degraded"
        assert health["store"]["state"] == "failing" and "readonly" in health["store"]["last_error"]
        # A new message is refused, not acknowledged: the sender is told to send it again.
        refused = yield client.request("chat.send", {"text": "and this?"})
        assert not refused["ok"] and refused["error"]["code"] == frames.STORE_UNAVAILABLE

        yield read_only(daemon, False)  # the disk is back
        reply = yield client.next()
        assert reply["event"] == "chat.reply" and reply["payload"]["reply_to"] == event_id
        assert reply["payload"]["text"] == "written once the disk is back"
        yield until(lambda: daemon.service.getServiceNamed("store").status()["state"] == "ok", what="store ok")
        code, _, _ = yield daemon.get("/readyz")
        assert code == 200
        history = yield client.request("chat.history", {})
        texts = [(m["role"], m["text"]) for m in history["payload"]["messages"]]
        assert texts == [("user", "are you there?"), ("assistant", "written once the disk is back")]
        state = yield daemon.service.getServiceNamed("store").inbound_state(event_id)
        assert state == "done" and len(llm.requests) == 1  # answered once, the model asked once

        # And afterwards everything works as before.
        llm.answer(openai_text("fine", prompt_tokens=0, completion_tokens=0))
        ack = yield client.request("chat.send", {"text": "again"})
        assert ack["ok"]
        reply = yield client.next()
        assert reply["payload"]["text"] == "fine"
        code, _, _ = yield daemon.get("/livez")
        assert code == 200
        yield client.close()
    finally:
        yield daemon.stop()


@pytest.mark.parametrize("where, reason", [
    ("/proc/openclaw-test/openclaw.sqlite3", "No such file or directory"),
    ("FILE/openclaw.sqlite3", "FILE is not a directory"),
])
def test_a_store_that_cannot_be_opened_stops_the_start_with_one_line(tmp_path, where, reason) -> None:
    # /proc takes no new files, not even from root; a path through a plain file is no directory.
    (tmp_path / "FILE").write_text("not a directory")
    path = where.replace("FILE", str(tmp_path / "FILE"))
    reason = reason.replace("FILE", str(tmp_path / "FILE"))
    config = tmp_path / "openclaw.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{path}'}}\n")
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "openclaw", "--home", str(tmp_path / "home"), "--config", str(config),
         "--gateway", "tcp:0:interface=127.0.0.1", "--web", "tcp:0:interface=127.0.0.1"],
        capture_output=True, text=True, timeout=60, env=clean_env(), cwd="/")
    assert result.returncode == 1, result
    output = result.stdout + result.stderr  # twistd -n sends stderr to its log on stdout
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "openclaw: store:" in line]
    assert line.endswith(f"openclaw: store: cannot open {path}: {reason}")


@pytest_twisted.inlineCallbacks
def test_redis_killed_and_restarted_leaves_no_acknowledged_message_unanswered(tmp_path, llm, redis_server) -> None:
    daemon = RunningDaemon(str(tmp_path / "home"), daemon_config(
        store={"url": f"redis://127.0.0.1:{redis_server.port}/0"}, brain=model_brain(llm)))
    try:
        yield daemon.service.ready
        client, event_id = yield acknowledged_while_thinking(daemon, llm, "hello redis", "stored once Redis is back")
        redis_server.kill()
        guard = daemon.service.getServiceNamed("store")
        yield until(lambda: guard.failing, what="the store failing")
        code, _, body = yield daemon.get("/readyz")
        assert code == 503 and json.loads(body)["store"]["state"] == "failing"
        refused = yield client.request("chat.send", {"text": "while Redis is down"})
        assert not refused["ok"] and refused["error"]["code"] == frames.STORE_UNAVAILABLE

        redis_server.start()
        reply = yield client.next()
        assert reply["event"] == "chat.reply" and reply["payload"]["reply_to"] == event_id
        yield until(lambda: not guard.failing, timeout=40, what="the store recovered")
        code, _, _ = yield daemon.get("/readyz")
        assert code == 200
        state = yield guard.inbound_state(event_id)
        history = yield guard.history("webchat:test", 10)
        assert state == "done" and [m["text"] for m in history].count("stored once Redis is back") == 1
        assert len(llm.requests) == 1
        yield client.close()
    finally:
        yield daemon.stop()
