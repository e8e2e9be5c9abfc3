"""
The lease scripts (``openclaw.cluster.redis_lease``) on a real Redis server
of the test's own: racing holders, renew by a non-holder, expiry and a
higher token for the next holder, and fenced writes refused for a stale token.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
import txredisapi
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, gatherResults
from twisted.internet.task import deferLater

from openclaw.cluster.redis_lease import Fenced, RedisLeases, parse_holder

PREFIX = "t:"


@pytest_twisted.async_yield_fixture
async def leases(redis_server) -> Any:
    redis = await txredisapi.Connection("127.0.0.1", redis_server.port, reconnect=False, convertNumbers=False)
    yield RedisLeases(redis, PREFIX)
    await redis.disconnect()


@pytest_twisted.inlineCallbacks
def test_of_racing_holders_exactly_one_acquires(leases) -> None:
    results = yield gatherResults([leases.acquire("scheduler", f"host:{i}:abc", 10) for i in range(8)])
    won = [i for i, token in enumerate(results) if token is not None]
    assert len(won) == 1 and results[won[0]] == 1
    holder = yield leases.holder("scheduler")
    assert holder == (f"host:{won[0]}:abc", 1)


@pytest_twisted.inlineCallbacks
def test_renew_and_release_by_a_non_holder_fail(leases) -> None:
    token = yield leases.acquire("connector:telegram:abc", "a:1:x", 10)
    assert (yield leases.renew("connector:telegram:abc", "b:2:y", token, 10)) is False
    assert (yield leases.renew("connector:telegram:abc", "a:1:x", token + 1, 10)) is False
    assert (yield leases.release("connector:telegram:abc", "b:2:y", token)) is False
    assert (yield leases.renew("connector:telegram:abc", "a:1:x", token, 10)) is True
    assert (yield leases.release("connector:telegram:abc", "a:1:x", token)) is True
    assert (yield leases.holder("connector:telegram:abc")) is None
    again = yield leases.acquire("connector:telegram:abc", "b:2:y", 10)
    assert again == token + 1


@pytest_twisted.inlineCallbacks
def test_expiry_lets_another_acquire_with_a_higher_token_and_fences_the_old(leases) -> None:
    first = yield leases.acquire("scheduler", "a:1:x", 0.05)
    assert (yield leases.acquire("scheduler", "b:2:y", 10)) is None
    yield leases.guarded_set_state("scheduler", first, "cron:report", {"due": 1})
    redis = leases.redis
    second = None
    for _ in range(500):  # polled until Redis expired the lease (50 ms)
        second = yield leases.acquire("scheduler", "b:2:y", 10)
        if second is not None:
            break
        yield deferLater(reactor, 0.01, lambda: None)
    assert second == first + 1
    assert (yield leases.renew("scheduler", "a:1:x", first, 10)) is False
    # The old holder wakes and writes with its token: refused, nothing written.
    stale = yield DeferredList([leases.guarded_set_state("scheduler", first, "cron:report", {"due": 2})],
                               consumeErrors=True)
    assert stale[0][0] is False and stale[0][1].check(Fenced)
    yield leases.guarded_set_state("scheduler", second, "cron:report", {"due": 3})
    value = yield redis.hget(f"{PREFIX}state", "cron:report")
    assert value == '{"due": 3}'


def test_holder_values_parse_with_colons_in_the_instance_id() -> None:
    assert parse_holder("host:123:abcdef:7") == ("host:123:abcdef", 7)
    assert parse_holder(None) is None and parse_holder("garbage") is None and parse_holder(":5") is None
