"""
The Redis store path of one message, without the gateway or a brain: record
(the shard stream's XADD included) -> the shard consumer reads it -> complete
(reply into the outbox, history, XACK + XDEL), with ``--window`` records
outstanding.  Reports messages/s, this process's CPU per message and the
Redis commands per message (``INFO commandstats`` before and after), so a
change to the scripts or the read loop shows as round trips and CPU rather
than only as a wall-clock rate on a shared machine.

    .venv/bin/python bench/redis_store.py [--messages 20000] [--window 200] [--sessions 1000]
                                          [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred, succeed

from openclaw.cluster.lease import Timing
from openclaw.cluster.redis_lease import RedisLeases
from openclaw.events import MESSAGE_RECEIVED, Event, OutboxItem
from openclaw.shards import SHARDS, ShardConsumer
from openclaw.store.redis import RedisStore


class Answering:
    """The pipeline's part: complete each taken event with one reply."""

    def __init__(self, store: RedisStore, done: Any) -> None:
        self.store, self.done = store, done

    def take(self, event: Event) -> Deferred:
        reply = OutboxItem(session_id=event.session_id, channel="webchat", text="ok",
                           dedupe_key=f"reply:{event.id}", reply_to=event.id)
        return self.store.complete_inbound(event.id, [reply]).addCallback(lambda _: self.done(event.id))


def commandstats(info: Any) -> dict[str, int]:
    """Calls per command from ``INFO commandstats`` (raw text, or txredisapi's parsed dict)."""
    if isinstance(info, dict):
        return {k[len("cmdstat_"):]: int(v["calls"] if isinstance(v, dict) else dict(
            f.split("=") for f in v.split(","))["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
    stats = {}
    for line in info.splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            stats[name] = int(dict(f.split("=") for f in fields.split(","))["calls"])
    return stats


async def run(reactor: Any, args: argparse.Namespace) -> None:
    prefix = f"bench-store-{secrets.token_hex(4)}:"
    store = RedisStore(reactor, args.redis, prefix)
    await store.startService()
    answered: set[str] = set()
    finished: Deferred = Deferred()

    def done(event_id: str) -> None:
        answered.add(event_id)
        if len(answered) == args.messages and not finished.called:
            finished.callback(None)

    consumer = ShardConsumer(reactor, store, lambda: RedisLeases(store.redis, prefix), Answering(store, done),
                             f"bench:{secrets.randbelow(10**6)}:abcdef", Timing.for_ttl(15.0),
                             instances=lambda: succeed([]))
    consumer.startService()
    await consumer.ready
    assert len(consumer.held) == SHARDS
    before = commandstats(await store.redis.info("commandstats"))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    window = defer.DeferredSemaphore(args.window)
    records = [window.run(store.record_inbound, Event(
        type=MESSAGE_RECEIVED, source="webchat", session_id=f"webchat:bench-{n % args.sessions}",
        timestamp=reactor.seconds(), payload={"text": f"m{n}"})) for n in range(args.messages)]
    await defer.gatherResults(records)
    acked = time.perf_counter() - wall0
    await finished
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    after = commandstats(await store.redis.info("commandstats"))
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    await consumer.stopService()
    await store.redis.eval("for _, k in ipairs(redis.call('KEYS', ARGV[1]..'*')) do redis.call('DEL', k) end",
                           [], [prefix])
    await store.stopService()
    n = args.messages
    print(f"messages {n}, window {args.window}, sessions {args.sessions}")
    print(f"recorded (acknowledged) {n / acked:,.0f}/s; answered {n / wall:,.0f}/s; "
          f"this process's CPU {cpu / n * 1e6:,.0f} us per message")
    per = {k: v / n for k, v in sorted(calls.items()) if v / n >= 0.01 and k not in ("info", "eval")}
    print("Redis commands per message (server-wide INFO commandstats, commands run inside scripts included): "
          + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(run(reactor, args)))


if __name__ == "__main__":
    main()
