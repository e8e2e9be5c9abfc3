"""
A MultiService that starts its children in order and stops them in reverse,
one at a time.

Twisted's ``MultiService.stopService`` stops every child at once and hides
their failures in a DeferredList; an ordered drain needs each child's stop to
finish before the next begins, and failures to be logged, not lost.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from eliot.twisted import DeferredContext
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred

from openclaw.eliotutil import begin
from openclaw.runtime import Runtime


class OrderedMultiService(MultiService):
    """Children start in the order they were added and stop in reverse."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        super().__init__()
        self.runtime = runtime

    def _set(self, child: IService, state: str) -> None:
        if self.runtime is not None and child.name:
            self.runtime.services[child.name] = state

    def startService(self) -> None:
        Service.startService(self)
        for child in self:
            with begin("openclaw:service:start", service=child.name or repr(child)):
                self._set(child, "starting")
                child.startService()
                self._set(child, "running")

    def stopService(self) -> Deferred:
        Service.stopService(self)
        return self.walk_backwards("stop", lambda child: child.stopService(), "stopped")

    @inlineCallbacks
    def walk_backwards(
        self, step: str, call: Callable[[Any], Any], state: str, only: Callable[[Any], bool] = lambda c: True
    ) -> Any:
        """
        Call ``call(child)`` on the children last-first, waiting for each
        result before the next; a failure is logged and the walk goes on.
        :return: a Deferred firing with the number of children that failed.
        """
        children: Iterable[Any] = [c for c in reversed(list(self)) if only(c)]
        failures = 0
        for child in children:
            action = begin(f"openclaw:service:{step}", service=child.name or repr(child))
            with action.context():
                d = DeferredContext(maybeDeferred(call, child))
                d.addActionFinish()
            try:
                yield d.result
            except Exception:
                failures += 1  # already logged as the action's failure
                self._set(child, "failed")
            else:
                self._set(child, state)
        return failures
