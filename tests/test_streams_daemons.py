"""
Two whole daemons (in-process trees) on one real Redis: they share the
inbound shards, and a webchat client connected to one gets every reply once,
whichever instance answered (the shard holder answers; the fan-out pushes).
"""

from __future__ import annotations

import orjson
import pytest_twisted

from openclaw.shards import SHARDS, shard_of
from tests import wsclient
from tests.daemon import RunningDaemon, daemon_config
from tests.waiting import until


@pytest_twisted.inlineCallbacks
def test_replies_reach_the_client_whichever_instance_answers(tmp_path, redis_server) -> None:
    config = daemon_config(store={"url": f"redis://127.0.0.1:{redis_server.port}/0"},
                           cluster={"lease_ttl": 1.5, "instance_ttl": 1.5})
    daemons = [RunningDaemon(str(tmp_path / name), config) for name in ("a", "b")]
    client = None
    try:
        yield until(lambda: all(d.service.ready.called for d in daemons), what="both ready")
        consumers = [d.service.getServiceNamed("shards") for d in daemons]
        yield until(lambda: all(len(c.held) == SHARDS // 2 for c in consumers), what="the shards shared", timeout=20)
        a, b = daemons
        # Sessions of shards that b holds: a receives them, b answers them.
        sessions = [s for s in (f"webchat:s{n}" for n in range(200))
                    if shard_of(s) in consumers[1].held][:6]
        client = yield wsclient.connect(a.gateway_port, a.token)
        requests = {client.send("chat.send", {"text": f"/status {n}", "session": sessions[n % 6]}): sessions[n % 6]
                    for n in range(18)}
        sent: dict[str, str] = {}
        replies: dict[str, int] = {}
        while len(sent) < len(requests) or set(replies) != set(sent):
            frame = yield client.next()
            if frame["type"] == "res":
                assert frame["ok"], frame
                sent[frame["payload"]["event_id"]] = requests[frame["id"]]
            elif frame["event"] == "chat.reply":
                reply_to = frame["payload"]["reply_to"]
                replies[reply_to] = replies.get(reply_to, 0) + 1
        assert replies == {event_id: 1 for event_id in sent}
        code, _, body = yield b.get("/health")
        assert code == 200 and sorted(orjson.loads(body)["shards"]["held"]) == sorted(consumers[1].held)
        # Only b read those shards, so b answered, and a's client heard it through the fan-out.
        assert all(shard_of(s) in consumers[1].held and shard_of(s) not in consumers[0].held for s in sessions)
        for event_id, session in sent.items():
            history = yield a.service.getServiceNamed("store").history(session, 50)
            assert [m["event_id"] for m in history if m["role"] == "assistant"].count(event_id) == 1
    finally:
        if client is not None:
            yield client.close()
        for daemon in daemons:
            yield daemon.stop()
