"""
The brain as a service of the tree: one ``CurrentBrain`` that the pipeline,
the heartbeat and the reports all ask, and whose model a reload replaces.

A message already with the old brain finishes with it; the next one goes to
the new brain.  Nothing else holds a brain of its own.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from zope.interface import implementer

from openclaw.config import BrainConfig, Config
from openclaw.eliotutil import log, message_type, typed
from openclaw.interfaces import IBrain, IReconfigurable


BRAIN_REPLACED = message_type("openclaw:brain:replaced", [typed("brain", [str], "the new brain's name")],
                              "a reload changed the brain: new messages use the new one")


@implementer(IBrain)
class CurrentBrain:
    """Answers with whichever brain the configuration asks for now."""

    def __init__(self, brain: Any) -> None:
        self.current = brain

    @property
    def name(self) -> str:
        return self.current.name

    @property
    def uses_history(self) -> bool:
        return self.current.uses_history

    def respond(self, request: Any) -> Any:
        return self.current.respond(request)


@implementer(IReconfigurable)
class BrainService(Service):
    """
    :param make: builds the brain of a ``BrainConfig`` (``agent.factory.make_brain``
        with the runtime's facts and tools bound).
    """

    def __init__(self, config: BrainConfig, make: Callable[[BrainConfig], Any]) -> None:
        self.config = config
        self._make = make
        self.brain = CurrentBrain(make(config))

    def reconfigure(self, config: Config) -> None:
        if config.brain == self.config:
            return
        self.brain.current, self.config = self._make(config.brain), config.brain
        log(BRAIN_REPLACED, brain=self.brain.name)
