"""The ordered service tree: start in order, drain then stop in reverse, one at a time."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from openclaw.config import build_config
from openclaw.daemon import HURRY_GRACE, DaemonService
from openclaw.interfaces import IDrainable
from openclaw.ordered import OrderedMultiService
from openclaw.runtime import DRAINING, RUNNING, STARTING, STOPPED, Runtime


class Recorder(Service):
    """A child whose stop waits on a Deferred the test fires."""

    def __init__(self, name: str, journal: list, fail_stop: bool = False) -> None:
        self.setName(name)
        self.journal = journal
        self.fail_stop = fail_stop
        self.stopping: defer.Deferred | None = None

    def startService(self) -> None:
        Service.startService(self)
        self.journal.append(("start", self.name))

    def stopService(self) -> defer.Deferred:
        Service.stopService(self)
        self.journal.append(("stop", self.name))
        self.stopping = defer.Deferred()
        if self.fail_stop:
            self.stopping.addCallback(lambda _: 1 / 0)
        return self.stopping


@implementer(IDrainable)
class DrainingRecorder(Recorder):
    def drain(self) -> defer.Deferred:
        self.journal.append(("drain", self.name))
        self.draining = defer.Deferred()
        return self.draining

    def hurry(self) -> None:
        self.journal.append(("hurry", self.name))


NAMES = ["logging", "store", "state", "gateway", "web", "connectors", "heartbeat", "systemd"]


def build(journal: list, drainable=("gateway", "heartbeat"), failing=(), clock=None) -> tuple[DaemonService, dict]:
    clock = clock or Clock()
    runtime = Runtime(clock)
    root = DaemonService(runtime, clock, None, build_config({"daemon": {"drain_timeout": "30s"}}))
    children = {}
    for name in NAMES:
        cls = DrainingRecorder if name in drainable else Recorder
        child = cls(name, journal, fail_stop=name in failing)
        child.setServiceParent(root)
        children[name] = child
    return root, children


def test_children_start_in_order_and_the_daemon_becomes_ready() -> None:
    journal: list = []
    root, _ = build(journal)
    assert root.runtime.phase == STARTING
    root.startService()
    assert journal == [("start", n) for n in NAMES]
    assert root.runtime.phase == RUNNING
    assert set(root.runtime.services.values()) == {"running"}


def test_drain_then_stop_walk_backwards_one_child_at_a_time() -> None:
    journal: list = []
    root, children = build(journal)
    root.startService()
    journal.clear()
    done = root.stopService()
    assert root.runtime.phase == DRAINING
    # Only the last drainable child is asked first; nothing else moves yet.
    assert journal == [("drain", "heartbeat")]
    children["heartbeat"].draining.callback(None)
    assert journal[-1] == ("drain", "gateway")
    children["gateway"].draining.callback(None)
    for expected in reversed(NAMES):
        assert journal[-1] == ("stop", expected), journal
        assert not done.called
        children[expected].stopping.callback(None)
    assert done.called
    assert root.runtime.phase == STOPPED
    assert [step for step, _ in journal] == ["drain"] * 2 + ["stop"] * len(NAMES)


def test_a_failing_stop_is_logged_and_the_walk_goes_on() -> None:
    journal: list = []
    root, children = build(journal, drainable=(), failing=("web",))
    root.startService()
    done = root.stopService()
    for name in reversed(NAMES):
        children[name].stopping.callback(None)
    assert done.called
    assert ("stop", "logging") in journal and ("stop", "store") in journal
    assert root.runtime.services["web"] == "failed"
    assert root.runtime.services["store"] == "stopped"


def test_the_drain_budget_hurries_a_slow_child_and_the_rest_drain_hurried() -> None:
    journal: list = []
    clock = Clock()
    root, children = build(journal, clock=clock)
    root.startService()
    root.stopService()
    assert journal[-1] == ("drain", "heartbeat")
    clock.advance(29.9)
    assert ("hurry", "heartbeat") not in journal
    clock.advance(0.1)
    assert journal[-1] == ("hurry", "heartbeat")
    children["heartbeat"].draining.callback(None)
    # The budget is spent: the next child is hurried as soon as it drains.
    assert journal[-1] == ("drain", "gateway")
    clock.advance(0)
    assert journal[-1] == ("hurry", "gateway")


def test_a_child_that_ignores_hurry_is_given_up_on_and_counted() -> None:
    journal: list = []
    clock = Clock()
    root, children = build(journal, drainable=("heartbeat",), clock=clock)
    root.startService()
    done = root.stopService()
    clock.advance(30)
    assert journal[-1] == ("hurry", "heartbeat")
    clock.advance(HURRY_GRACE)
    assert root.runtime.services["heartbeat"] == "failed"
    for name in reversed(NAMES):
        children[name].stopping.callback(None)
    assert done.called and root.runtime.phase == STOPPED


def test_hurry_reaches_every_drainable_child() -> None:
    journal: list = []
    root, _ = build(journal)
    root.startService()
    root.stopService()
    root.hurry()
    assert ("hurry", "gateway") in journal and ("hurry", "heartbeat") in journal


def test_nested_ordered_services_stop_in_reverse() -> None:
    journal: list = []
    parent = OrderedMultiService()
    for name in ["a", "b", "c"]:
        Recorder(name, journal).setServiceParent(parent)
    parent.startService()
    parent.stopService()
    assert journal[-1] == ("stop", "c")
    for child in reversed(list(parent)):
        child.stopping.callback(None)
    assert [n for step, n in journal if step == "stop"] == ["c", "b", "a"]
