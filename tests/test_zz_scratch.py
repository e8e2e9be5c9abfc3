import pytest_twisted
from tests.cluster import Cluster, MessageStream, after, holders
from tests.telegram_server import BotAPI
from tests.waiting import until
from tests.test_cluster_failover import settled, telegram_lease


@pytest_twisted.inlineCallbacks
def test_scratch(tmp_path, redis_server):
    api = BotAPI().start()
    cluster = Cluster(tmp_path, redis_server, api)
    stream = MessageStream(cluster, api)
    try:
        cluster.start()
        held = yield settled(cluster)
        print(held)
        yield stream.start()
        yield after(3)
        victim = cluster.by_instance(held[telegram_lease(held)])
        victim.kill()
        yield after(4)
        stream.stop()
        try:
            yield until(stream.all_answered, timeout=20, every=0.5)
        except AssertionError:
            print("MISSING", stream.missing)
        print(len(stream.acked), len(stream.pushed), dict(stream.refused))
        replies = yield stream.replies()
        print({e: replies[e] for e in stream.acked if replies[e] != 1})
        print({c: n for c, n in stream.telegram_replies().items() if n != 1})
        print(api.max_pollers, [g for g in api.poll_gaps(api.polls[0].start) if g[1] - g[0] > 1])
        print(max(stream.pushes.values() or [0]), len(stream.pushes))
        held = yield holders(cluster.running()[0])
        print(held)
    finally:
        yield stream.close()
        cluster.stop()
        yield api.stop()
