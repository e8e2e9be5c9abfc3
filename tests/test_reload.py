"""Reload by difference: the pure plan, and the real tree reloading its file while clients stay connected."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from openclaw import metrics
from openclaw.config import build_config
from openclaw.eliotutil import enabled
from openclaw.reload import RESTART_KEYS, plan_reload
from tests import wsclient
from tests.daemon import RunningDaemon, file_source
from tests.telegram_server import TOKEN, BotAPI, text_update
from tests.waiting import until

BASE = """
log: {level: info}
heartbeat: {every: 30m}
"""

WITH_CHECK = """
log: {level: debug}
heartbeat: {every: 10m}
checks:
  - {name: disk-root, type: disk, target: /, every: 1h}
"""


def reloads(result: str) -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_config_reloads_total", {"result": result}) or 0.0


# The plan, without I/O

sections = st.fixed_dictionaries({}, optional={
    "gateway": st.fixed_dictionaries({}, optional={
        "listen": st.sampled_from(["tcp:18789:interface=127.0.0.1", "tcp:1234:interface=127.0.0.1"]),
        "backlog": st.sampled_from([511, 64]), "max_bad_frames": st.integers(1, 5)}),
    "web": st.fixed_dictionaries({}, optional={"listen": st.sampled_from(["tcp:8080", "tcp:8081"]),
                                               "backlog": st.sampled_from([511, 64])}),
    "log": st.fixed_dictionaries({}, optional={"level": st.sampled_from(["info", "debug"])}),
    "heartbeat": st.fixed_dictionaries({}, optional={"every": st.sampled_from(["30m", "5m", 0])}),
    "store": st.fixed_dictionaries({}, optional={"prefix": st.sampled_from(["a:", "b:"]),
                                                 "retention": st.sampled_from(["30d", "1d"])}),
})


@given(sections, sections)
def test_the_plan_keeps_what_needs_a_restart_and_lists_what_changed(old_doc, new_doc) -> None:
    old, new = build_config(old_doc), build_config(new_doc)
    plan = plan_reload(old, new)
    for section, key in RESTART_KEYS:
        running = getattr(getattr(old, section), key)
        assert getattr(getattr(plan.applied, section), key) == running
        assert (f"{section}.{key}" in plan.restart_needed) == (getattr(getattr(new, section), key) != running)
    # Everything else is the new file's.
    neutral = new
    for s, k in RESTART_KEYS:
        neutral = replace(neutral, **{s: replace(getattr(neutral, s), **{k: getattr(getattr(old, s), k)})})
    assert plan.applied == neutral
    assert set(plan.changed) == {s for s in ("gateway", "web", "log", "heartbeat", "store")
                                 if getattr(old, s) != getattr(plan.applied, s)}
    assert plan_reload(old, old).changed == () and plan_reload(old, old).restart_needed == ()


def test_a_first_mailbox_needs_a_restart() -> None:
    mailbox = {"name": "me", "host": "127.0.0.1", "user": "me", "password": "secret-password", "tls": "none"}
    plan = plan_reload(build_config(), build_config({"mail": [mailbox]}))
    assert plan.restart_needed == ("mail",) and plan.applied.mail == ()


# The real tree


@pytest_twisted.inlineCallbacks
def test_a_reload_adds_a_check_changes_level_and_interval_and_keeps_the_client(tmp_path) -> None:
    home = str(tmp_path / "home")
    source = file_source(home, BASE)
    daemon = RunningDaemon(home, source=source)
    try:
        heartbeat = daemon.service.getServiceNamed("heartbeat")
        client = yield wsclient.connect(daemon.gateway_port, daemon.token)
        yield client.request("subscribe", {"session": "*"})
        before = reloads("applied")
        assert not enabled("debug")

        file_source(home, WITH_CHECK)
        reply = yield client.request("reload")
        outcome = reply["payload"]
        assert outcome["result"] == "applied" and outcome["restart_needed"] == []
        assert set(outcome["changed"]) == {"log", "heartbeat", "checks"}
        assert reloads("applied") == before + 1
        assert enabled("debug") and heartbeat.every == 600.0
        assert heartbeat.next_beat() is not None and heartbeat.next_beat() <= daemon.runtime.started_at + 600.0 + 1

        # Same connection, still subscribed and answering.
        pong = yield client.request("ping")
        assert pong["ok"]
        code, _, body = yield daemon.get("/health")
        health = json.loads(body)
        checks = daemon.service.getServiceNamed("checks")
        yield until(lambda: checks.states() and checks.states()[0]["ok"] is not None)
        code, _, body = yield daemon.get("/health")
        health = json.loads(body)
        assert "disk-root" in health["checks"]
        assert health["config"]["digest"] == source.load().digest() == outcome["digest"]
        assert health["config"]["last_reload"]["result"] == "applied"
        assert health["config"]["path"] == f"{home}/openclaw.yaml"
        yield client.close()
    finally:
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_a_broken_config_changes_nothing_and_says_why(tmp_path) -> None:
    home = str(tmp_path / "home")
    daemon = RunningDaemon(home, source=file_source(home, BASE))
    try:
        digest = daemon.runtime.config_digest
        before = reloads("rejected")
        file_source(home, "heartbeat: {every: soon}\nchecks: [{name: x}]\n")
        outcome = yield daemon.service.reload()
        assert outcome.result == "rejected"
        assert outcome.reason.startswith("config error: heartbeat.every: expected a duration")
        assert reloads("rejected") == before + 1
        assert daemon.runtime.config_digest == digest
        assert daemon.service.getServiceNamed("heartbeat").every == 1800.0
        code, _, body = yield daemon.get("/health")
        last = json.loads(body)["config"]["last_reload"]
        assert last["result"] == "rejected" and "heartbeat.every" in last["reason"]

        file_source(home, BASE)
        outcome = yield daemon.service.reload()
        assert outcome.result == "unchanged"
    finally:
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_listen_addresses_need_a_restart_and_the_rest_still_applies(tmp_path) -> None:
    home = str(tmp_path / "home")
    daemon = RunningDaemon(home, source=file_source(home, BASE))
    try:
        port = daemon.gateway_port
        source = file_source(home, "log: {level: warn}\n")
        moved = replace(source, overrides={**source.overrides, "gateway.listen": "tcp:1:interface=127.0.0.1"})
        daemon.service._load_config = moved.load
        outcome = yield daemon.service.reload()
        assert outcome.result == "applied" and outcome.restart_needed == ("gateway.listen",)
        assert daemon.service.getServiceNamed("logging").level == "warn"
        assert daemon.gateway.port.getHost().port == port
        assert daemon.service.config.gateway.listen == "tcp:0:interface=127.0.0.1"
    finally:
        yield daemon.stop()


TELEGRAM = """
connectors:
  telegram: {{enabled: true, token: "{token}", api_url: "{url}", allow_from: ["{allow}"], poll_timeout: {poll},
             rate_per_minute: 0}}
"""


@pytest_twisted.inlineCallbacks
def test_an_unchanged_connector_keeps_its_connection_and_an_allowlist_applies_live(tmp_path) -> None:
    api = BotAPI().start()
    home = str(tmp_path / "home")
    text = TELEGRAM.format(token=TOKEN, url=api.url, allow="42", poll=0.3)
    daemon = RunningDaemon(home, source=file_source(home, text))
    try:
        connectors = daemon.service.getServiceNamed("connectors")
        telegram = connectors.getServiceNamed("telegram")
        yield until(telegram.is_connected)
        connects = api.calls["getMe"]

        file_source(home, text + WITH_CHECK)  # another section changed
        yield daemon.service.reload()
        assert connectors.getServiceNamed("telegram") is telegram and telegram.is_connected()
        assert api.calls["getMe"] == connects and telegram.reconnects == 0

        file_source(home, TELEGRAM.format(token=TOKEN, url=api.url, allow="7", poll=0.3) + WITH_CHECK)
        outcome = yield daemon.service.reload()
        assert outcome.changed == ("connectors",)
        assert connectors.getServiceNamed("telegram") is telegram and api.calls["getMe"] == connects
        api.push(text_update(7, "/help"))  # 7 was not allowed before the reload
        yield until(lambda: api.texts(7))

        file_source(home, TELEGRAM.format(token=TOKEN, url=api.url, allow="7", poll=0.4) + WITH_CHECK)
        yield daemon.service.reload()
        replaced = connectors.getServiceNamed("telegram")
        assert replaced is not telegram and not telegram.running
        yield until(replaced.is_connected)
    finally:
        yield daemon.stop()
        yield api.stop()


@pytest_twisted.inlineCallbacks
def test_every_gateway_method_is_counted_under_its_own_name(tmp_path) -> None:
    daemon = RunningDaemon(str(tmp_path))
    try:
        client = yield wsclient.connect(daemon.gateway_port, daemon.token)
        names = sorted(daemon.gateway.methods)
        assert {"checks.list", "cron.list", "heartbeat.status", "pairing.list", "reports.get", "reload"} <= set(names)
        for name in names:
            if name == "heartbeat.run":
                continue  # a beat; counted like the rest, but slow to wait for here
            before = metrics.REGISTRY.get_sample_value(
                "openclaw_requests_total", {"source": "gateway", "type": name}) or 0.0
            yield client.request(name, {})
            after = metrics.REGISTRY.get_sample_value("openclaw_requests_total", {"source": "gateway", "type": name})
            assert after == before + 1, name
        yield client.close()
    finally:
        yield daemon.stop()
