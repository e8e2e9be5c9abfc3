"""The outbox sender: delivery, retries with backoff, giving up visibly, isolation."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from openclaw import metrics
from openclaw.events import OutboxItem
from openclaw.logs import scrub_text
from openclaw.outbox import OutboxService
from openclaw.store.sqlite import SQLiteStore
from tests.waiting import until


NOW = 1_800_000_000.0


def item(n: int, channel: str = "test") -> OutboxItem:
    return OutboxItem(session_id=f"{channel}:{n}", channel=channel, text=f"message {n}", dedupe_key=f"k{n}",
                      next_attempt=NOW, created_at=NOW)


class Deliverer:
    def __init__(self, outcomes) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    def __call__(self, outbox_item: OutboxItem):
        self.calls.append(outbox_item.text)
        outcome = self.outcomes(outbox_item)
        if isinstance(outcome, Exception):
            raise outcome
        return defer.succeed(outcome)


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(reactor, str(tmp_path / "s.sqlite3"))
    store.startService()
    yield store
    pytest_twisted.blockon(store.stopService())


def started(store, deliverers, max_attempts=3):
    clock = Clock()
    clock.advance(NOW)
    return store, clock, OutboxService(clock, store, deliverers, max_attempts=max_attempts)


@pytest_twisted.inlineCallbacks
def test_delivered_rows_are_marked_sent(store) -> None:
    deliver = Deliverer(lambda i: True)
    store, clock, outbox = started(store, {"test": deliver})
    yield store.enqueue_outbox(item(1))
    yield outbox.kick()
    assert deliver.calls == ["message 1"]
    assert (yield store.outbox_counts()) == {"pending": 0, "sent": 1, "failed": 0}
    yield outbox.kick()
    assert deliver.calls == ["message 1"]  # never sent twice
    yield outbox.stopService()


@pytest_twisted.inlineCallbacks
def test_failures_retry_with_backoff_then_fail_visibly_without_blocking_others(store) -> None:
    deliver = Deliverer(lambda i: RuntimeError("platform down") if i.text == "message 1" else True)
    gave_up = metrics.REGISTRY.get_sample_value("openclaw_outbox_gave_up_total", {"channel": "test"}) or 0
    store, clock, outbox = started(store, {"test": deliver}, max_attempts=3)
    yield store.enqueue_outbox(item(1))
    yield store.enqueue_outbox(item(2))
    yield outbox.kick()
    assert deliver.calls == ["message 1", "message 2"]  # the failure did not stop the next row
    assert (yield store.outbox_counts()) == {"pending": 1, "sent": 1, "failed": 0}
    yield outbox.kick()
    assert deliver.calls.count("message 1") == 1  # not due yet: backoff
    clock.advance(2.5)  # first retry after ~2 s
    yield outbox.kick()
    assert deliver.calls.count("message 1") == 2
    clock.advance(5)  # second retry after ~4 s: the third attempt gives up
    yield outbox.kick()
    assert deliver.calls.count("message 1") == 3
    assert (yield store.outbox_counts()) == {"pending": 0, "sent": 1, "failed": 1}
    assert metrics.REGISTRY.get_sample_value("openclaw_outbox_failed") == 1
    assert outbox.counts["failed"] == 1  # what /health shows
    assert metrics.REGISTRY.get_sample_value("openclaw_outbox_gave_up_total", {"channel": "test"}) == gave_up + 1
    yield outbox.stopService()


@pytest_twisted.inlineCallbacks
def test_nobody_to_deliver_to_keeps_the_row_pending_without_using_attempts(store) -> None:
    listening = []
    deliver = Deliverer(lambda i: bool(listening))
    store, clock, outbox = started(store, {"test": deliver}, max_attempts=1)
    yield store.enqueue_outbox(item(1))
    for _ in range(3):
        yield outbox.kick()
    assert (yield store.outbox_counts())["pending"] == 1
    listening.append(True)
    yield outbox.kick()
    assert (yield store.outbox_counts()) == {"pending": 0, "sent": 1, "failed": 0}
    yield outbox.stopService()


@pytest_twisted.inlineCallbacks
def test_an_unknown_channel_is_a_failure_not_a_crash(store) -> None:
    store, clock, outbox = started(store, {}, max_attempts=1)
    yield store.enqueue_outbox(item(1, channel="nowhere"))
    yield outbox.kick()
    assert (yield store.outbox_counts())["failed"] == 1
    yield outbox.stopService()


@pytest_twisted.inlineCallbacks
def test_kicks_during_a_pass_wait_for_it_and_coalesce_into_one_more(store) -> None:
    held: defer.Deferred = defer.Deferred()
    calls: list[str] = []

    def deliver(outbox_item: OutboxItem) -> defer.Deferred:
        calls.append(outbox_item.text)
        return held if outbox_item.text == "message 1" else defer.succeed(True)

    store, clock, outbox = started(store, {"test": deliver})
    passes = []
    due_outbox = store.due_outbox
    store.due_outbox = lambda *a: (passes.append(1), due_outbox(*a))[1]
    yield store.enqueue_outbox(item(1))
    first = outbox.kick()
    yield until(lambda: calls)  # the first pass is delivering message 1
    yield store.enqueue_outbox(item(2))
    during = [outbox.kick() for _ in range(3)]
    assert not any(d.called for d in [first, *during])
    held.callback(True)
    yield defer.gatherResults([first, *during])
    assert outbox.loop.busy and len(passes) == 2  # they waited for the pass that was running, not the next
    yield until(lambda: not outbox.loop.busy and calls == ["message 1", "message 2"])
    assert len(passes) == 2  # the three kicks made one more pass, not three
    yield outbox.stopService()
    assert outbox.kick().called  # after stop: at once, no pass
    assert len(passes) == 2


@pytest_twisted.inlineCallbacks
def test_a_delivery_error_is_redacted_before_it_is_stored(store) -> None:
    token = "tok-0123456789abcdef"
    echoed = f"HTTP 401 from https://api.example/bot{token}/send: {base64.b64encode(token.encode()).decode()}"
    deliver = Deliverer(lambda i: RuntimeError(echoed))
    clock = Clock()
    clock.advance(NOW)
    outbox = OutboxService(clock, store, {"test": deliver}, redact=lambda text: scrub_text(text, [token]))
    yield store.enqueue_outbox(item(1))
    yield outbox.kick()
    clock.advance(3600)
    (row,) = yield store.due_outbox(clock.seconds(), 10)
    assert "HTTP 401" in row.last_error and "<redacted>" in row.last_error
    assert token not in row.last_error and base64.b64encode(token.encode()).decode() not in row.last_error
    yield outbox.stopService()


class Routes(dict):
    """Deliverers by channel, as ``ChannelRoutes`` gives them: ``deliverable()`` is what this instance holds."""

    def __init__(self, held: dict) -> None:
        super().__init__(held)

    def deliverable(self) -> list[str]:
        return sorted(self)


@pytest_twisted.inlineCallbacks
def test_with_several_instances_only_rows_of_held_channels_are_taken(store) -> None:
    deliver = Deliverer(lambda i: True)
    clock = Clock()
    clock.advance(NOW)
    outbox = OutboxService(clock, store, Routes({"webchat": deliver}), only_deliverable=True)
    yield store.enqueue_outbox(item(1, "telegram"))  # another instance holds telegram
    yield store.enqueue_outbox(item(2, "webchat"))
    yield outbox.kick()
    assert deliver.calls == ["message 2"]
    (left,) = yield store.due_outbox(NOW, 10)
    assert (left.channel, left.attempts, left.last_error) == ("telegram", 0, None)  # untouched, not failed
    yield outbox.stopService()


def test_channel_routes_name_the_channels_deliverable_here() -> None:
    from openclaw.connectors.service import ChannelRoutes

    class Connectors:
        namedServices = {"telegram": object(), "slack": object()}

        def deliverer(self, channel):
            return (lambda item: True) if channel == "slack" else None  # telegram is held elsewhere

        def standby(self, channel):
            return channel == "telegram"

    routes = ChannelRoutes({"webchat": lambda item: True}, Connectors())
    assert routes.deliverable() == ["slack", "webchat"]
    assert routes.get("telegram")(None) is False  # the holder sends it: the row stays pending here
