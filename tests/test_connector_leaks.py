"""
A connector that reconnects for months must not leak: 1,000 forced
reconnect cycles of the Slack connector against a local server (hello, then
``disconnect``, at once), with open file descriptors and RSS compared before
and after.  The figures are printed (also under ``-q``) and recorded as test
properties for docs/benchmarks.md.
"""

from __future__ import annotations

import gc
import os

import psutil
import pytest_twisted
from twisted.internet import reactor

from openclaw.connectors.slack import SlackConnector
from tests.connector_harness import Harness
from tests.slack_server import DISCONNECT, SlackServer, config, until

WARMUP = 50
CYCLES = 1000
FD_SLACK = 5
RSS_SLACK = 20 * 1024 * 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest_twisted.inlineCallbacks
def test_a_thousand_reconnects_leak_no_descriptors_or_memory(tmp_path, capsys, record_property) -> None:
    server = SlackServer().start()
    server.socket_mode = DISCONNECT
    harness = Harness(str(tmp_path))
    connector = harness.start(lambda h: SlackConnector(
        reactor, config(server, backoff_max=0.001), h.pipeline, h.store, h.notifier, environ={}, rng=lambda: 0.0))
    process = psutil.Process()
    yield until(lambda: server.connections >= WARMUP, timeout=60)
    gc.collect()
    fds_before, rss_before, start = open_fds(), process.memory_info().rss, server.connections
    yield until(lambda: server.connections >= start + CYCLES, timeout=300)
    cycles = server.connections - start
    gc.collect()
    fds_after, rss_after = open_fds(), process.memory_info().rss
    yield harness.stop()
    yield server.stop()
    figures = {"cycles": cycles, "fds_before": fds_before, "fds_after": fds_after,
               "rss_before_mib": round(rss_before / 2**20, 1), "rss_after_mib": round(rss_after / 2**20, 1)}
    for name, value in figures.items():
        record_property(name, value)
    with capsys.disabled():
        print("\nslack reconnect leak test: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    assert connector.reconnects >= WARMUP + CYCLES - 1
    assert fds_after <= fds_before + FD_SLACK
    assert rss_after - rss_before <= RSS_SLACK
