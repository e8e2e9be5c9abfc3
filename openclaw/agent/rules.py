"""
The offline brain: the daemon's slash commands, answered from ``Facts``.

It is the default when no model provider is configured, so a fresh install
is useful (and honest about what it cannot do) without any network.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from openclaw.agent.base import BrainReply, BrainRequest, Facts
from openclaw.interfaces import IBrain

COMMANDS = {
    "help": "list the commands",
    "status": "is everything up?",
    "sessions": "the known chat sessions",
    "heartbeat": "the last and next heartbeat",
    "checks": "the latest check results",
    "report": "recent activity",
}

GREETING = (
    "Hello, I am openclaw, your assistant daemon. I watch this machine and tell you "
    "what needs attention. Send /help for the commands."
)

NO_MODEL = (
    "No language model is configured, so I only understand commands (send /help). "
    "To chat, add a provider under brain.providers in the config "
    "(see docs/configuration.md and docs/brains.md)."
)


_COMMAND = re.compile(r"/([A-Za-z0-9_]+)(?:@\S*)?(?:\s|$)")


def help_text() -> str:
    """The command list, one per line."""
    return "Commands:\n" + "\n".join(f"/{name}: {what}" for name, what in COMMANDS.items())


def parse_command(text: str) -> str | None:
    """
    The command word of ``/word args`` (lower case, without a Telegram-style
    ``@botname`` suffix), or ``None`` when the text is not a command.
    """
    match = _COMMAND.match(text.strip())
    return match.group(1).lower() if match else None


def _heartbeat(facts: Facts) -> str:
    beat = facts.heartbeat()
    return (
        f"Last heartbeat: {beat.get('last') or 'none yet'}\n"
        f"Next heartbeat: {beat.get('next') or 'not scheduled'}"
    )


def _sessions(facts: Facts) -> str:
    names = facts.sessions()
    if not names:
        return "No sessions yet."
    return f"{len(names)} session(s):\n" + "\n".join(names)


@implementer(IBrain)
class RulesBrain:
    """Answers slash commands from the runtime's facts; needs no network."""

    name = "rules"
    uses_history = False

    def __init__(self, facts: Facts) -> None:
        self._answers: dict[str, Callable[[], str]] = {
            "help": help_text,
            "start": lambda: GREETING,
            "status": facts.health_summary,
            "sessions": lambda: _sessions(facts),
            "heartbeat": lambda: _heartbeat(facts),
            "checks": facts.checks,
            "report": facts.report,
        }

    def respond(self, request: BrainRequest) -> Deferred:
        """Answer at once; an unknown command gets the help, free text the no-model note."""
        return succeed(BrainReply(text=self.answer(request.text), provider=self.name))

    def answer(self, text: str) -> str:
        """The reply text for ``text`` (pure apart from reading the facts)."""
        command = parse_command(text)
        if command is None:
            return NO_MODEL
        answer = self._answers.get(command)
        if answer is None:
            return f"Unknown command /{command}.\n" + help_text()
        return answer()
