"""
Two real daemons (``twistd openclaw`` processes, separate homes and ports)
on one real Redis server: exactly one runs the heartbeat, and a SIGKILL of
that one hands the scheduler to the other within the lease TTL.  The
three-daemon runs with connectors and webchat traffic are in the end-to-end
tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.process import DaemonProcess

TOKEN = "cluster-test-token-0123456789abcdef"
TTL = 3.0
#: A ceiling, not a wait: two daemons and Redis share two loaded cores.
CEILING = 30.0


def health(daemon: DaemonProcess) -> Any:
    d = treq.get(f"http://127.0.0.1:{daemon.web}/health", persistent=False)
    d.addCallback(lambda response: response.content())
    return d.addCallback(json.loads)


@pytest_twisted.inlineCallbacks
def polled(daemons: list[DaemonProcess], predicate: Any, what: str, ceiling: float = CEILING) -> Any:
    """Every daemon's /health, polled every 50 ms until ``predicate(bodies)`` holds."""
    deadline = reactor.seconds() + ceiling
    while True:
        bodies = []
        for daemon in daemons:
            bodies.append((yield health(daemon)))
        if predicate(bodies):
            return bodies
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what} not seen within {ceiling:g}s: {bodies}")
        yield deferLater(reactor, 0.05, lambda: None)


def holds_scheduler(body: dict) -> bool:
    return "scheduler" in body["cluster"]["holds"]


def listed_holders(body: dict) -> list[str]:
    """The instances this one's listing shows holding the scheduler."""
    return [i["id"] for i in body["cluster"]["instances"] if "scheduler" in i["holds"]]


@pytest_twisted.inlineCallbacks
def test_two_daemons_one_heartbeat_and_a_killed_holder_hands_it_over(tmp_path, redis_server) -> None:
    env = {"OPENCLAW_GATEWAY_TOKEN": TOKEN, "OPENCLAW_STORE_URL": f"redis://127.0.0.1:{redis_server.port}/0",
           "OPENCLAW_CLUSTER_LEASE_TTL": f"{TTL:g}s", "OPENCLAW_CLUSTER_INSTANCE_TTL": f"{TTL:g}s",
           "OPENCLAW_HEARTBEAT_EVERY": "1s"}
    daemons = [DaemonProcess(tmp_path / name, str(tmp_path / name / "home"), **env) for name in ("a", "b")]
    for daemon in daemons:
        (tmp_path / daemon.home).parent.mkdir(parents=True, exist_ok=True)
    try:
        for daemon in daemons:
            daemon.start()
        bodies = yield polled(daemons, lambda bodies: all(len(b["cluster"]["instances"]) == 2 for b in bodies)
                              and sum(holds_scheduler(b) for b in bodies) == 1 and any(b["last_heartbeat"] for b in bodies)
                              and all(b["status"] == "ok" for b in bodies)
                              and all(len(listed_holders(b)) == 1 for b in bodies),
                              "both instances listed and healthy, one scheduler holder that beat")
        holder = next(i for i, b in enumerate(bodies) if holds_scheduler(b))
        other = 1 - holder
        assert bodies[other]["last_heartbeat"] is None, "the standby instance beat too"
        assert listed_holders(bodies[other]) == [bodies[holder]["cluster"]["instance_id"]]

        killed_at = reactor.seconds()
        daemons[holder].kill()
        bodies = yield polled([daemons[other]], lambda bodies: holds_scheduler(bodies[0]), "the takeover")
        # Within the TTL and one renew period (plus what two busy cores add).
        assert reactor.seconds() - killed_at < TTL + TTL / 3 + 5.0
        yield polled([daemons[other]], lambda bodies: bodies[0]["last_heartbeat"] is not None, "the new holder beating")
        code, output = daemons[other].stop()
        assert code == 0, output.decode()
    finally:
        for daemon in daemons:
            daemon.ensure_dead()


@pytest_twisted.inlineCallbacks
def test_one_daemon_polls_telegram_and_the_other_takes_over_when_it_stops(tmp_path, redis_server) -> None:
    """Two in-process daemons, one bot: one polls, the other is on standby until the poller stops."""
    from twisted.internet.task import LoopingCall

    from tests.daemon import RunningDaemon, daemon_config
    from tests.telegram_server import TOKEN as BOT_TOKEN
    from tests.telegram_server import BotAPI, text_update
    from tests.waiting import until

    api = BotAPI().start()
    overlap = []
    sampler = LoopingCall(lambda: overlap.append(len(api._polls)))
    sampler.start(0.01)
    config = daemon_config(
        store={"url": f"redis://127.0.0.1:{redis_server.port}/0"}, cluster={"lease_ttl": "1s", "instance_ttl": "1s"},
        connectors={"telegram": {"enabled": True, "token": BOT_TOKEN, "api_url": api.url, "allow_from": ["42"],
                                 "poll_timeout": 0.5}})
    daemons = [RunningDaemon(str(tmp_path / name), config) for name in ("a", "b")]
    try:
        yield until(lambda: sorted(d.service.getServiceNamed("connectors").health()["telegram"]["state"]
                                   for d in daemons) == ["connected", "standby"], what="one poller, one standby")
        holder = next(d for d in daemons if d.service.getServiceNamed("connectors").health()["telegram"]["connected"])
        other = daemons[1 - daemons.index(holder)]
        assert other.service.getServiceNamed("connectors").deliverer("telegram") is None
        yield holder.stop()  # a clean stop releases the lease at once
        yield until(lambda: other.service.getServiceNamed("connectors").health()["telegram"]["connected"],
                    what="the other instance polling")
        api.push(text_update(7, "after the handover", sender_id=42))
        yield until(lambda: api.texts(7), what="the reply from the new holder")
        assert max(overlap) <= 1, "two pollers at once"
    finally:
        sampler.stop()
        for daemon in daemons:
            yield daemon.stop()
        yield api.stop()
