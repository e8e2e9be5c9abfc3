import pytest_twisted
from tests.cluster import Cluster, MessageStream, after
from tests.telegram_server import BotAPI
from tests.waiting import until


@pytest_twisted.inlineCallbacks
def test_scratch(tmp_path, redis_server):
    api = BotAPI().start()
    cluster = Cluster(tmp_path, redis_server, api)
    stream = MessageStream(cluster, api)
    try:
        cluster.start()
        yield stream.start()
        yield after(4)
        cluster.daemons[1].kill()
        yield after(2)
        stream.stop()
        yield until(stream.all_answered, timeout=30, every=0.5)
        replies = yield stream.replies()
        print(len(stream.acked), len(stream.pushed), dict(stream.refused))
        print({e: replies[e] for e in stream.acked if replies[e] != 1})
        print(stream.telegram_replies())
        print(api.max_pollers, api.poll_gaps(api.polls[0].start))
        print(cluster.journal("heartbeat")[:3], cluster.journal("cron")[:3])
        print(max(stream.pushes.values()))
    finally:
        yield stream.close()
        cluster.stop()
        yield api.stop()
