"""
The ``IStore`` contract, written once and run against every store.

A test module subclasses ``StoreContract`` and provides a ``backend``
fixture: a ``Backend`` whose ``make(namespace)`` builds an unstarted store
over the data area ``namespace`` (same namespace, same data: that is how the
restart test reopens a store).  ``Backend.close`` stops whatever is still
running so a failing test leaves no thread or connection behind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest_twisted
from hypothesis import given, settings
from twisted.internet import reactor
from twisted.internet.defer import (
    Deferred,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.threads import blockingCallFromThread

from openclaw.events import MESSAGE_RECEIVED, Event, OutboxItem
from openclaw.interfaces import IStore
from tests.strategies import store_operations

#: Messages of history per session every contract store keeps.
HISTORY = 5


@dataclass
class Backend:
    make: Callable[[str], Any]
    cleanup: Callable[[], Any] = lambda: None
    started: list[Any] = field(default_factory=list)

    @inlineCallbacks
    def start(self, namespace: str = "main") -> Any:
        store = self.make(namespace)
        self.started.append(store)
        yield maybeDeferred(store.startService)
        return store

    @inlineCallbacks
    def close(self) -> Any:
        for store in self.started:
            if store.running:
                yield store.stopService()
        yield maybeDeferred(self.cleanup)


def message(session: str = "s1", text: str = "hi", platform_id: Any = None, source: str = "telegram",
            timestamp: float = 1000.0, **payload: Any) -> Event:
    """A chat message event; ``platform_id`` None leaves it out of the payload."""
    if platform_id is not None:
        payload["platform_message_id"] = platform_id
    return Event(type=MESSAGE_RECEIVED, source=source, session_id=session, timestamp=timestamp,
                 payload={"text": text, **payload})


def reply(event: Event, text: str = "ok", n: int = 0, **kw: Any) -> OutboxItem:
    return OutboxItem(session_id=event.session_id, channel=event.source, text=text,
                      dedupe_key=f"reply:{event.id}:{n}", reply_to=event.id, **kw)


def alert(key: str, text: str = "alert", **kw: Any) -> OutboxItem:
    return OutboxItem(session_id="ops", channel="telegram", text=text, dedupe_key=key, **kw)


def in_thread(function: Callable[[], Any]) -> Deferred:
    """Run a blocking ``function`` on a daemon thread; the reactor keeps running."""
    d: Deferred = Deferred()

    def run() -> None:
        try:
            result = function()
        except BaseException as e:  # handed to the test, which fails with it
            reactor.callFromThread(d.errback, e)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, daemon=True).start()
    return d


class StoreContract:
    """Every ``IStore`` must pass these."""

    @pytest_twisted.inlineCallbacks
    def test_provides_istore(self, backend: Backend) -> Any:
        store = yield backend.start()
        assert IStore.providedBy(store)

    @pytest_twisted.inlineCallbacks
    def test_state(self, backend: Backend) -> Any:
        store = yield backend.start()
        assert (yield store.get_state("missing")) is None
        yield store.set_state("a:1", {"x": [1, 2]})
        yield store.set_state("a:2", "5")
        yield store.set_state("a:1", {"x": [3]})
        yield store.set_state("b", 0)
        assert (yield store.get_state("a:1")) == {"x": [3]}
        assert (yield store.get_state("a:2")) == "5"
        assert (yield store.state_keys("a:")) == ["a:1", "a:2"]
        yield store.delete_state("a:2")
        yield store.delete_state("never-there")
        assert (yield store.state_keys("")) == ["a:1", "b"]

    @pytest_twisted.inlineCallbacks
    def test_record_is_idempotent_on_source_and_platform_id(self, backend: Backend) -> Any:
        store = yield backend.start()
        first = message(platform_id=42, text="first")
        assert (yield store.record_inbound(first)) == (first.id, False)
        again = message(platform_id=42, text="again")
        assert (yield store.record_inbound(again)) == (first.id, True)
        assert (yield store.record_inbound(first)) == (first.id, True)
        other_source = message(platform_id=42, source="slack")
        assert (yield store.record_inbound(other_source)) == (other_source.id, False)
        assert [e.id for e in (yield store.pending_inbound())] == [first.id, other_source.id]
        assert [m["text"] for m in (yield store.history("s1", 10))] == ["first", "hi"]
        assert (yield store.inbound_state(again.id)) is None

    @pytest_twisted.inlineCallbacks
    def test_events_without_platform_id_are_never_deduplicated(self, backend: Backend) -> Any:
        store = yield backend.start()
        events = [message(text="same") for _ in range(3)]
        for event in events:
            assert (yield store.record_inbound(event)) == (event.id, False)
        assert [e.id for e in (yield store.pending_inbound())] == [e.id for e in events]

    @pytest_twisted.inlineCallbacks
    def test_pending_inbound_in_arrival_order_across_sessions(self, backend: Backend) -> Any:
        store = yield backend.start()
        events = [message(session=f"s{i % 4}", text=f"m{i}", timestamp=2000.0 - i) for i in range(40)]
        results = yield gatherResults([store.record_inbound(e) for e in events])
        assert results == [(e.id, False) for e in events]
        pending = yield store.pending_inbound()
        assert pending == events  # round-trips every field, in arrival (not timestamp) order

    @pytest_twisted.inlineCallbacks
    def test_complete_is_atomic_and_idempotent(self, backend: Backend) -> Any:
        store = yield backend.start()
        event = message(text="question")
        yield store.record_inbound(event)
        first, second = reply(event, "one", 0), reply(event, "two", 1)
        assert (yield store.complete_inbound(event.id, [first, second])) == [first.id, second.id]
        assert (yield store.inbound_state(event.id)) == "done"
        assert (yield store.pending_inbound()) == []
        assert (yield store.complete_inbound(event.id, [reply(event, "three", 2)])) == []
        assert (yield store.outbox_counts()) == {"pending": 2, "sent": 0, "failed": 0}
        history = yield store.history("s1", 10)
        assert [(m["role"], m["text"], m["event_id"]) for m in history] == [
            ("user", "question", event.id), ("assistant", "one", event.id), ("assistant", "two", event.id)]

    @pytest_twisted.inlineCallbacks
    def test_complete_without_replies_and_of_unknown_event(self, backend: Backend) -> Any:
        store = yield backend.start()
        event = message()
        yield store.record_inbound(event)
        assert (yield store.complete_inbound(event.id, [])) == []
        assert (yield store.inbound_state(event.id)) == "done"
        try:
            yield store.complete_inbound("no-such-event", [reply(event)])
        except KeyError:
            pass
        else:
            raise AssertionError("completing an unknown event must fail")
        assert (yield store.outbox_counts())["pending"] == 0

    @pytest_twisted.inlineCallbacks
    def test_fail_inbound(self, backend: Backend) -> Any:
        store = yield backend.start()
        failed, kept = message(text="a"), message(text="b")
        yield store.record_inbound(failed)
        yield store.record_inbound(kept)
        yield store.fail_inbound(failed.id, "brain exploded")
        assert (yield store.inbound_state(failed.id)) == "failed"
        assert [e.id for e in (yield store.pending_inbound())] == [kept.id]
        assert (yield store.complete_inbound(failed.id, [reply(failed)])) == []
        assert (yield store.inbound_state(failed.id)) == "failed"
        yield store.complete_inbound(kept.id, [])
        yield store.fail_inbound(kept.id, "too late")
        assert (yield store.inbound_state(kept.id)) == "done"
        assert (yield store.inbound_state("unknown")) is None

    @pytest_twisted.inlineCallbacks
    def test_enqueue_is_idempotent_on_dedupe_key(self, backend: Backend) -> Any:
        store = yield backend.start()
        item = alert("disk-full")
        assert (yield store.enqueue_outbox(item)) == (item.id, False)
        assert (yield store.enqueue_outbox(alert("disk-full", "other text"))) == (item.id, True)
        event = message()
        yield store.record_inbound(event)
        # A reply whose key is already queued is not queued again.
        assert (yield store.complete_inbound(event.id, [alert("disk-full")])) == []
        due = yield store.due_outbox(10**10, 10)
        assert [(i.id, i.text) for i in due] == [(item.id, "alert")]

    @pytest_twisted.inlineCallbacks
    def test_enqueue_remember_writes_history_once(self, backend: Backend) -> Any:
        store = yield backend.start()
        item = alert("check:disk:alert", "disk is full")
        assert (yield store.enqueue_outbox(item, remember=True)) == (item.id, False)
        # A repeat of the same finding is neither queued nor remembered again.
        assert (yield store.enqueue_outbox(alert("check:disk:alert", "disk is full"), remember=True))[1] is True
        yield store.enqueue_outbox(alert("quiet", "not remembered"))
        history = yield store.history("ops", 10)
        assert [(m["role"], m["text"], m["event_id"]) for m in history] == [("assistant", "disk is full", item.id)]
        assert [i.id for i in (yield store.due_outbox(10**10, 10))][0] == item.id

    @pytest_twisted.inlineCallbacks
    def test_due_outbox_order_limit_and_time(self, backend: Backend) -> Any:
        store = yield backend.start()
        late = alert("late", next_attempt=500.0, created_at=1.0)
        first = alert("first", next_attempt=100.0, created_at=2.0, reply_to="x")
        second = alert("second", next_attempt=50.0, created_at=3.0)
        third = alert("third", next_attempt=100.0, created_at=4.0)
        for item in (late, first, second, third):
            yield store.enqueue_outbox(item)
        assert (yield store.due_outbox(49.0, 10)) == []
        assert [i.id for i in (yield store.due_outbox(100.0, 10))] == [first.id, second.id, third.id]
        assert [i.id for i in (yield store.due_outbox(100.0, 2))] == [first.id, second.id]
        assert [i.id for i in (yield store.due_outbox(500.0, 10))] == [late.id, first.id, second.id, third.id]
        assert (yield store.due_outbox(500.0, 0)) == []
        (got,) = yield store.due_outbox(100.0, 1)
        assert got == first  # every field round-trips

    @pytest_twisted.inlineCallbacks
    def test_due_outbox_of_some_channels_only(self, backend: Backend) -> Any:
        store = yield backend.start()
        telegram = alert("t", next_attempt=1.0)
        web = OutboxItem(session_id="webchat:a", channel="webchat", text="w", dedupe_key="w", next_attempt=2.0)
        for item in (telegram, web):
            yield store.enqueue_outbox(item)
        assert [i.id for i in (yield store.due_outbox(10.0, 10, ["webchat"]))] == [web.id]
        assert [i.id for i in (yield store.due_outbox(10.0, 10, ["slack", "telegram"]))] == [telegram.id]
        assert (yield store.due_outbox(10.0, 10, [])) == []
        assert [i.id for i in (yield store.due_outbox(10.0, 10, None))] == [telegram.id, web.id]

    @pytest_twisted.inlineCallbacks
    def test_enqueue_defaults_times_to_now(self, backend: Backend) -> Any:
        store = yield backend.start()
        before = reactor.seconds()
        yield store.enqueue_outbox(alert("now"))
        (item,) = yield store.due_outbox(reactor.seconds() + 1, 10)
        assert before <= item.next_attempt <= reactor.seconds()
        assert before <= item.created_at <= reactor.seconds()
        assert (item.status, item.attempts, item.last_error) == ("pending", 0, None)

    @pytest_twisted.inlineCallbacks
    def test_outbox_transitions_and_counts(self, backend: Backend) -> Any:
        store = yield backend.start()
        sent, retried, failed = alert("a", next_attempt=1.0), alert("b", next_attempt=1.0), alert("c", next_attempt=1.0)
        for item in (sent, retried, failed):
            yield store.enqueue_outbox(item)
        assert (yield store.outbox_counts()) == {"pending": 3, "sent": 0, "failed": 0}
        yield store.mark_sent(sent.id)
        yield store.mark_retry(retried.id, 200.0, "timeout")
        yield store.mark_retry(retried.id, 300.0, "timeout again")
        yield store.mark_failed(failed.id, "forbidden")
        assert (yield store.outbox_counts()) == {"pending": 1, "sent": 1, "failed": 1}
        assert (yield store.due_outbox(299.0, 10)) == []
        (item,) = yield store.due_outbox(300.0, 10)
        assert (item.id, item.attempts, item.next_attempt, item.last_error) == (retried.id, 2, 300.0, "timeout again")
        # Settled rows stay settled.
        yield store.mark_retry(sent.id, 1.0, "late")
        yield store.mark_sent(failed.id)
        yield store.mark_sent("unknown")
        assert (yield store.outbox_counts()) == {"pending": 1, "sent": 1, "failed": 1}
        yield store.mark_failed(retried.id, "gave up")
        assert (yield store.outbox_counts()) == {"pending": 0, "sent": 1, "failed": 2}
        assert (yield store.due_outbox(10**10, 10)) == []

    @pytest_twisted.inlineCallbacks
    def test_history_is_bounded_newest_kept_oldest_first(self, backend: Backend) -> Any:
        store = yield backend.start()
        events = [message(text=f"m{i}", timestamp=float(i)) for i in range(HISTORY + 3)]
        for event in events:
            yield store.record_inbound(event)
        yield store.record_inbound(message(session="other", text="elsewhere"))
        yield store.record_inbound(message(text=""))  # no text, no history row
        history = yield store.history("s1", 100)
        assert history == [{"role": "user", "text": e.text, "event_id": e.id, "timestamp": e.timestamp}
                           for e in events[-HISTORY:]]
        assert [m["text"] for m in (yield store.history("s1", 2))] == [e.text for e in events[-2:]]
        assert (yield store.history("s1", 0)) == []
        assert (yield store.history("nobody", 5)) == []
        yield store.complete_inbound(events[-1].id, [reply(events[-1], "answer")])
        assert [m["role"] for m in (yield store.history("s1", 2))] == ["user", "assistant"]

    @pytest_twisted.inlineCallbacks
    def test_sessions_first_seen_and_last_active(self, backend: Backend) -> Any:
        store = yield backend.start()
        yield store.record_inbound(message(session="b", timestamp=10.5, sender_id=7))
        yield store.record_inbound(message(session="b", timestamp=30.25))
        yield store.record_inbound(message(session="b", timestamp=20.0))  # late arrival
        yield store.record_inbound(message(session="a", source="slack", timestamp=5.0))
        assert (yield store.sessions()) == [
            {"session_id": "a", "channel": "slack", "peer": None, "first_seen": 5.0, "last_active": 5.0},
            {"session_id": "b", "channel": "telegram", "peer": "7", "first_seen": 10.5, "last_active": 30.25},
        ]

    @pytest_twisted.inlineCallbacks
    def test_message_counts_by_channel_in_a_time_range(self, backend: Backend) -> Any:
        store = yield backend.start()
        inside = [message(source="telegram", timestamp=t, platform_id=n) for n, t in enumerate((100.0, 150.5, 199.9))]
        outside = [message(source="telegram", timestamp=99.9), message(source="slack", timestamp=200.0)]
        for event in inside + outside:
            yield store.record_inbound(event)
        yield store.record_inbound(message(source="telegram", timestamp=120.0, platform_id=0))  # duplicate
        (sent,) = yield store.complete_inbound(inside[0].id, [reply(inside[0], created_at=120.0)])
        rows = [alert(f"a{n}", created_at=t) for n, t in enumerate((110.0, 130.0, 140.0, 250.0))]
        rows.append(OutboxItem(session_id="slack:1", channel="slack", text="x", dedupe_key="s", created_at=160.0))
        ids = [i for i, _ in (yield gatherResults([store.enqueue_outbox(item) for item in rows]))]
        for outbox_id in (sent, ids[0], ids[3], ids[4]):
            yield store.mark_sent(outbox_id)
        yield store.mark_failed(ids[1], "boom")  # ids[2] stays pending: not counted
        assert (yield store.message_counts(100.0, 200.0)) == {
            "telegram": {"in": 3, "out": 2, "failed": 1},
            "slack": {"in": 0, "out": 1, "failed": 0},
        }
        assert (yield store.message_counts(200.0, 300.0)) == {
            "slack": {"in": 1, "out": 0, "failed": 0},
            "telegram": {"in": 0, "out": 1, "failed": 0},
        }
        assert (yield store.message_counts(300.0, 400.0)) == {}

    @pytest_twisted.inlineCallbacks
    def test_prune_removes_only_finished_rows_older_than_the_cutoff(self, backend: Backend) -> Any:
        store = yield backend.start()
        old_done, old_waiting, new_done = (message(timestamp=t, platform_id=n) for n, t in enumerate((10.0, 20.0, 500.0)))
        for event in (old_done, old_waiting, new_done):
            yield store.record_inbound(event)
        (old_sent,) = yield store.complete_inbound(old_done.id, [reply(old_done, created_at=15.0)])
        (new_sent,) = yield store.complete_inbound(new_done.id, [reply(new_done, created_at=510.0)])
        (old_failed, _), (old_pending, _) = yield gatherResults([
            store.enqueue_outbox(alert("f", created_at=12.0)), store.enqueue_outbox(alert("p", created_at=13.0))])
        for outbox_id in (old_sent, new_sent):
            yield store.mark_sent(outbox_id)
        yield store.mark_failed(old_failed, "boom")
        yield store.append_journal("heartbeat", 30.0, {"n": 1})
        yield store.append_journal("heartbeat", 600.0, {"n": 2})
        yield store.append_journal("alert", 40.0, {"n": 3})
        assert (yield store.prune(100.0, 1000)) == {"outbox": 1, "inbound": 1, "journal": 2}
        assert (yield store.outbox_counts()) == {"pending": 1, "sent": 1, "failed": 1}
        assert (yield store.inbound_state(old_done.id)) is None
        assert (yield store.inbound_state(old_waiting.id)) == "received"
        assert [e.id for e in (yield store.pending_inbound())] == [old_waiting.id]
        assert [r["payload"] for r in (yield store.journal("heartbeat", 0.0))] == [{"n": 2}]
        assert (yield store.journal("alert", 0.0)) == []
        assert (yield store.prune(100.0, 1000)) == {"outbox": 0, "inbound": 0, "journal": 0}
        due = yield store.due_outbox(float("inf"), 10)
        assert [i.id for i in due] == [old_pending]

    @pytest_twisted.inlineCallbacks
    def test_prune_takes_at_most_limit_rows_of_a_kind_per_call(self, backend: Backend) -> Any:
        store = yield backend.start()
        events = [message(timestamp=float(t), platform_id=t) for t in range(5)]
        for event in events:
            yield store.record_inbound(event)
            yield store.complete_inbound(event.id, [])
        assert (yield store.prune(100.0, 2))["inbound"] == 2
        assert (yield store.prune(100.0, 2))["inbound"] == 2
        assert (yield store.prune(100.0, 2))["inbound"] == 1

    @pytest_twisted.inlineCallbacks
    def test_journal_since(self, backend: Backend) -> Any:
        store = yield backend.start()
        yield store.append_journal("heartbeat", 10.0, {"ok": True})
        yield store.append_journal("alert", 15.0, {"what": "disk"})
        yield store.append_journal("heartbeat", 20.5, {"ok": False})
        yield store.append_journal("heartbeat", 20.5, {"ok": False})
        assert (yield store.journal("heartbeat", 0.0)) == [
            {"kind": "heartbeat", "timestamp": 10.0, "payload": {"ok": True}},
            {"kind": "heartbeat", "timestamp": 20.5, "payload": {"ok": False}},
            {"kind": "heartbeat", "timestamp": 20.5, "payload": {"ok": False}},
        ]
        assert [r["timestamp"] for r in (yield store.journal("heartbeat", 20.5))] == [20.5, 20.5]
        assert (yield store.journal("alert", 15.1)) == []
        assert (yield store.journal("none", 0.0)) == []

    @pytest_twisted.inlineCallbacks
    def test_data_survives_a_restart(self, backend: Backend) -> Any:
        store = yield backend.start()
        done, pending = message(platform_id=1, text="done"), message(platform_id=2, text="pending")
        yield store.record_inbound(done)
        yield store.record_inbound(pending)
        (outbox_id,) = yield store.complete_inbound(done.id, [reply(done)])
        yield store.set_state("k", [1])
        yield store.append_journal("alert", 1.0, {"n": 1})
        yield store.stopService()

        store = yield backend.start()
        assert (yield store.pending_inbound()) == [pending]
        assert (yield store.record_inbound(message(platform_id=1))) == (done.id, True)
        assert [i.id for i in (yield store.due_outbox(10**10, 10))] == [outbox_id]
        assert (yield store.get_state("k")) == [1]
        assert [m["text"] for m in (yield store.history("s1", 10))] == ["done", "pending", "ok"]
        assert [s["session_id"] for s in (yield store.sessions())] == ["s1"]
        assert len((yield store.journal("alert", 0.0))) == 1

    @pytest_twisted.inlineCallbacks
    def test_matches_a_model_under_random_operations(self, backend: Backend) -> Any:
        examples = iter(range(10**6))

        def call(function: Callable[..., Deferred], *args: Any) -> Any:
            return blockingCallFromThread(reactor, function, *args)

        @settings(max_examples=30, deadline=None, database=None)
        @given(store_operations())
        def check(ops: list[tuple]) -> None:
            store = call(backend.start, f"model{next(examples)}")
            try:
                run(store, ops)
            finally:
                call(store.stopService)

        def run(store: Any, ops: list[tuple]) -> None:
            recorded: list[Event] = []  # first events, in arrival order
            by_platform_id: dict[int, str] = {}
            states: dict[str, str] = {}
            history: dict[str, list[tuple[str, str]]] = {}
            outbox = 0
            for op in ops:
                if op[0] == "record":
                    event = message(session=f"s{op[1]}", platform_id=op[2], text=f"t{len(recorded)}")
                    first = by_platform_id.get(op[2]) if op[2] is not None else None
                    expected = (first, True) if first else (event.id, False)
                    assert call(store.record_inbound, event) == expected
                    if not first:
                        recorded.append(event)
                        states[event.id] = "received"
                        history.setdefault(event.session_id, []).append(("user", event.text))
                        if op[2] is not None:
                            by_platform_id[op[2]] = event.id
                elif recorded:
                    event = recorded[op[1] % len(recorded)]
                    received = states[event.id] == "received"
                    if op[0] == "complete":
                        item = reply(event, f"r{event.text}")
                        assert call(store.complete_inbound, event.id, [item]) == ([item.id] if received else [])
                        if received:
                            states[event.id] = "done"
                            history[event.session_id].append(("assistant", item.text))
                            outbox += 1
                    else:
                        call(store.fail_inbound, event.id, "boom")
                        if received:
                            states[event.id] = "failed"
            assert [e.id for e in call(store.pending_inbound)] == [
                e.id for e in recorded if states[e.id] == "received"]
            for event in recorded:
                assert call(store.inbound_state, event.id) == states[event.id]
            for session, messages in history.items():
                got = call(store.history, session, HISTORY + 1)
                assert [(m["role"], m["text"]) for m in got] == messages[-HISTORY:]
            assert call(store.outbox_counts) == {"pending": outbox, "sent": 0, "failed": 0}

        yield in_thread(check)
        assert next(examples) > 1  # the examples really ran
