"""
The Redis store against the shared contract, on the Redis at
``OPENCLAW_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``); skipped when
none answers, except under CI.  Every test writes under its own key prefix and deletes it.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_twisted
import txredisapi
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from openclaw.store.redis import RedisStore, parse_url, redact
from openclaw.store.sqlite import StoreError
from tests.store_contract import HISTORY, Backend, StoreContract, alert, message

URL = os.environ.get("OPENCLAW_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _redis_answers() -> bool:
    parts = urlsplit(URL)
    try:
        socket.create_connection((parts.hostname, parts.port or 6379), timeout=1).close()
    except OSError:
        return False
    return True


# Under CI (.ci/run starts a server) a missing Redis is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and not _redis_answers(), reason=f"no Redis at {URL}"
)


async def _delete_keys(prefix: str) -> None:
    host, port, db, user, password = parse_url(URL)
    redis = await txredisapi.Connection(host, port, db, reconnect=False, password=password,
                                        username=user, convertNumbers=False)
    try:
        cursor = "0"
        while True:
            cursor, keys = await redis.scan(cursor, f"{prefix}*", 1000)
            if keys:
                await redis.delete(keys)
            if str(cursor) == "0":
                break
        assert await redis.keys(f"{prefix}*") == []
    finally:
        await redis.disconnect()


@pytest_twisted.async_yield_fixture
async def backend() -> Any:
    prefix = f"openclaw-test:{uuid.uuid4().hex}:"
    b = Backend(lambda namespace: RedisStore(reactor, URL, f"{prefix}{namespace}:", HISTORY),
                cleanup=lambda: Deferred.fromCoroutine(_delete_keys(prefix)))
    yield b
    await b.close()


class TestRedisContract(StoreContract):
    pass


@pytest_twisted.inlineCallbacks
def test_all_keys_start_with_the_prefix(backend: Backend) -> Any:
    store = yield backend.start("scoped")
    event = message(platform_id=1, sender_id=3)
    yield store.record_inbound(event)
    yield store.complete_inbound(event.id, [])
    yield store.set_state("k", 1)
    yield store.append_journal("alert", 1.0, {})
    keys = yield store._redis.keys("*")
    ours = [k for k in keys if k.startswith(store.prefix)]
    assert len(ours) >= 8
    assert not [k for k in keys if store.prefix[:-1] in k and not k.startswith(store.prefix)]


@pytest_twisted.inlineCallbacks
def test_an_unreachable_server_fails_start_naming_the_url() -> Any:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://:secret@127.0.0.1:{port}/0"
    store = RedisStore(reactor, url, "openclaw-test:", connect_timeout=0.3)
    with pytest.raises(StoreError, match=rf"cannot connect to redis://:\*\*\*@127.0.0.1:{port}/0") as info:
        yield store.startService()
    assert "secret" not in str(info.value)
    yield store.stopService()


def test_urls() -> None:
    assert parse_url("redis://h:7000/3") == ("h", 7000, 3, None, None)
    assert parse_url("redis://u:p@h") == ("h", 6379, 0, "u", "p")
    assert redact("redis://u:p@h:1/2") == "redis://u:***@h:1/2"
    with pytest.raises(StoreError, match="database number"):
        parse_url("redis://h/x")


@pytest_twisted.inlineCallbacks
def test_outbox_rows_taken_by_one_claimant_are_skipped_by_others_until_retried_or_lapsed(backend: Backend) -> Any:
    one = yield backend.start("shared")
    other = yield backend.start("shared")
    one.claim_as, other.claim_as = "host:1:aaaaaa", "host:2:bbbbbb"
    first, second = alert("a", next_attempt=1.0), alert("b", next_attempt=1.0)
    for item in (first, second):
        yield one.enqueue_outbox(item)
    assert [i.id for i in (yield one.due_outbox(10.0, 1))] == [first.id]
    assert [i.id for i in (yield other.due_outbox(10.0, 10))] == [second.id]  # the first is claimed
    assert [i.id for i in (yield one.due_outbox(10.0, 10))] == [first.id]  # its own claim: taken again
    yield one.mark_retry(first.id, 5.0, "timeout")  # a retry gives the row up to any instance
    other.claim_for = 0.05
    assert [i.id for i in (yield other.due_outbox(10.0, 10))] == [first.id, second.id]
    assert (yield one.due_outbox(10.0, 10)) == []
    rows: list = []
    while not rows:  # polled until the claim lapses by Redis's clock
        yield deferLater(reactor, 0.01, lambda: None)
        rows = yield one.due_outbox(10.0, 10)
    assert [i.id for i in rows] == [first.id, second.id]
