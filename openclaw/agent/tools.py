"""
Tools a model brain may call, and the ``ToolBox`` that guards them.

A model's tool call is untrusted input: the box exposes only the tools the
operator allowlisted (``brain.tools``), checks the arguments against each
tool's schema, and turns every failure into an error string handed back to
the model, so a bad call never crashes the session's lane.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from openclaw.agent.base import Facts
from openclaw.eliotutil import log, message_type, typed

RESULT_LIMIT = 4000
"""Characters of a tool result sent back to the model; the rest is cut."""

BRAIN_TOOL = message_type("openclaw:brain:tool", [
    typed("tool", [str], "the tool's name"), typed("ok", [bool], "false when it answered an error"),
    typed("result_length", [int], "characters of the result"),
], "the model called a tool", "debug")

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


@dataclass(frozen=True)
class Tool:
    """
    One callable tool.  ``parameters`` is a JSON schema of an object;
    ``call`` takes the validated arguments and returns a Deferred (or a
    plain value) of a string or a JSON-serialisable dict.
    """

    name: str
    description: str
    parameters: dict
    call: Callable[[dict], Any]


def check_args(schema: dict, args: Any) -> str | None:
    """
    Why ``args`` do not fit ``schema`` (a flat object schema: required keys,
    property types, no unknown keys), or ``None`` when they do.  Deliberately
    simple: the tools' schemas are flat.
    """
    if not isinstance(args, dict):
        return "arguments must be a JSON object"
    properties = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in args:
            return f"missing required argument {key!r}"
    for key, value in args.items():
        if key not in properties:
            return f"unknown argument {key!r}"
        wanted = properties[key].get("type")
        python = _JSON_TYPES.get(wanted)
        if python is None:
            continue
        if isinstance(value, bool) and wanted != "boolean":
            return f"argument {key!r} must be {wanted}"
        if not isinstance(value, python):
            return f"argument {key!r} must be {wanted}"
    return None


def _as_text(result: Any) -> str:
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + " [cut]"


class ToolBox:
    """The allowlisted tools, rendered for each API, run safely."""

    def __init__(self, tools: Iterable[Tool], allow: Sequence[str]) -> None:
        self._tools = {tool.name: tool for tool in tools if tool.name in allow}

    @property
    def names(self) -> list[str]:
        """The names a model may call, sorted."""
        return sorted(self._tools)

    def __bool__(self) -> bool:
        return bool(self._tools)

    def openai_tools(self) -> list[dict]:
        """The Chat Completions ``tools`` list."""
        return [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in self._tools.values()
        ]

    def anthropic_tools(self) -> list[dict]:
        """The Messages API ``tools`` list."""
        return [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in self._tools.values()
        ]

    def run(self, name: str, args: Any) -> Deferred:
        """
        Run tool ``name`` with ``args``.  Fires with the result as text; an
        unknown tool, bad arguments or a failing tool fire with an
        ``error: ...`` string for the model instead of failing.
        """
        d = maybeDeferred(self._call, name, args)
        d.addCallback(_as_text)
        d.addErrback(lambda f: f"error: {name} failed: {f.getErrorMessage() or f.type.__name__}")
        d.addCallback(_logged, name)
        return d

    def _call(self, name: str, args: Any) -> Any:
        tool = self._tools.get(name)
        if tool is None:
            return f"error: unknown tool {name!r}; available: {', '.join(self.names) or 'none'}"
        problem = check_args(tool.parameters, args)
        if problem is not None:
            return f"error: {problem}"
        return tool.call(args)


def _logged(text: str, name: str) -> str:
    log(BRAIN_TOOL, "debug", tool=name, ok=not text.startswith("error:"), result_length=len(text))
    return text


def _strings(**descriptions: str) -> dict:
    """The schema of an object of required string arguments, each with its description."""
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": d} for name, d in descriptions.items()},
        "required": list(descriptions),
        "additionalProperties": False,
    }


def send_message(enqueue: Callable[[str, str], Deferred], known_sessions: Callable[[], list[str]]) -> Tool:
    """
    Send a message to another known session (e.g. the owner's phone); it
    goes through the outbox like any reply.  Unknown sessions are refused so
    a model cannot message arbitrary peers.
    """

    @inlineCallbacks
    def call(args: dict):
        sessions = known_sessions()
        if args["session_id"] not in sessions:
            return f"error: unknown session {args['session_id']!r}; known: {', '.join(sessions) or 'none'}"
        yield enqueue(args["session_id"], args["text"])
        return "queued"

    return Tool(
        name="send_message",
        description="Send a text message to one of the owner's known chat sessions.",
        parameters=_strings(session_id="a known session id", text="the message"),
        call=call,
    )


def get_status(facts: Facts) -> Tool:
    """The daemon's own health, sessions, heartbeat and checks."""

    def call(args: dict) -> dict:
        return {
            "health": facts.health_summary(),
            "sessions": facts.sessions(),
            "heartbeat": facts.heartbeat(),
            "checks": facts.checks(),
        }

    return Tool(
        name="get_status",
        description="The assistant daemon's health, chat sessions, heartbeat times and latest check results.",
        parameters=_strings(),
        call=call,
    )


def http_check(
    reactor: IReactorTime, timeout: float, allow: Sequence[str] = (), resolve: Callable[[str], Deferred] | None = None,
) -> Tool:
    """
    GET a URL and report status, elapsed time and content type (not the
    body: a page's text is no business of the model's and may be large).
    Only http and https, and only public addresses unless ``allow`` lists
    networks (``agent/http_check.py`` says why and how it is checked).
    """

    def call(args: dict) -> Deferred:
        # Only when a model actually checks a URL: the HTTP client is not small.
        from openclaw.agent.http_check import check_url, parse_networks

        return check_url(reactor, args["url"], timeout, parse_networks(allow), resolve)

    return Tool(
        name="http_check",
        description="Check that a public web address answers: HTTP status, response time and content type.",
        parameters=_strings(url="an http or https URL"),
        call=call,
    )


def _memory_key(key: str) -> str:
    return f"memory:{key.strip().lower()}"


def remember(store: Any) -> Tool:
    """Keep a note under a key in the store's state (``memory:<key>``)."""

    @inlineCallbacks
    def call(args: dict):
        if not args["key"].strip():
            return "error: the key must not be empty"
        yield store.set_state(_memory_key(args["key"]), args["value"])
        return f"remembered {args['key'].strip().lower()!r}"

    return Tool(
        name="remember",
        description="Remember a short note under a key, across conversations and restarts.",
        parameters=_strings(key="a short name", value="what to remember"),
        call=call,
    )


def recall(store: Any) -> Tool:
    """Read back a note kept by ``remember``."""

    @inlineCallbacks
    def call(args: dict):
        value = yield store.get_state(_memory_key(args["key"]))
        return f"nothing remembered under {args['key']!r}" if value is None else value

    return Tool(
        name="recall",
        description="Recall the note remembered under a key.",
        parameters=_strings(key="the name used with remember"),
        call=call,
    )


def all_tools(
    reactor: IReactorTime,
    facts: Facts,
    store: Any,
    enqueue: Callable[[str, str], Deferred],
    known_sessions: Callable[[], list[str]],
    http_timeout: float = 10.0,
    http_allow: Sequence[str] = (),
) -> list[Tool]:
    """The five tools built from the runtime's collaborators; the box filters them."""
    return [
        send_message(enqueue, known_sessions),
        get_status(facts),
        http_check(reactor, http_timeout, http_allow),
        remember(store),
        recall(store),
    ]
