"""
Local stand-ins for model APIs, and small fakes the brain tests share.

``FakeLLM`` is a real HTTP server on 127.0.0.1 (an ephemeral port) that
answers each POST with the next scripted ``Canned`` response and records
every request, so tests can assert headers and bodies.  The builders below
spell OpenAI Chat Completions and Anthropic Messages responses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eliot import add_destinations, remove_destination
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from openclaw import eliotutil
from openclaw.agent.base import BrainRequest
from openclaw.agent.tools import ToolBox, recall, remember
from openclaw.config import ProviderConfig


@dataclass
class Canned:
    """One scripted answer; ``hang`` means never answer (for timeouts), ``delay`` answer that late."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay: float = 0.0


@dataclass
class Received:
    """One request as the server saw it: header names lower case, body decoded from JSON when it was."""

    path: str
    headers: dict[str, str]
    body: Any


class FakeLLM(Resource):
    """A scriptable model API; run out of script and it answers ``default`` (None: 500)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Canned] = []
        self.default: Canned | None = None
        self.requests: list[Received] = []
        self._waiters: list[tuple[int, Deferred]] = []
        self._port: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port.getHost().port}"

    def start(self) -> FakeLLM:
        self._port = reactor.listenTCP(0, Site(self), interface="127.0.0.1")
        return self

    def stop(self) -> Deferred:
        return self._port.stopListening()

    def answer(self, *canned: Canned) -> None:
        """Queue responses, answered in order."""
        self.script.extend(canned)

    def received(self, count: int) -> Deferred:
        """Fires once ``count`` requests have arrived."""
        if len(self.requests) >= count:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiters.append((count, d))
        return d

    def render_POST(self, request: Any) -> Any:
        raw = request.content.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append(Received(request.path.decode(), headers, body))
        for waiter in [w for w in self._waiters if len(self.requests) >= w[0]]:
            self._waiters.remove(waiter)
            waiter[1].callback(None)
        canned = self.script.pop(0) if self.script else (
            self.default or Canned(500, {"error": {"type": "script_exhausted"}}))
        if canned.hang:
            return NOT_DONE_YET
        if canned.delay:
            later = reactor.callLater(canned.delay, self._answer, request, canned)
            request.notifyFinish().addErrback(lambda _: later.active() and later.cancel())
            return NOT_DONE_YET
        return self._answer(request, canned, finish=False)

    # A model list (GET /models) is scripted and recorded the same way.
    render_GET = render_POST

    def _answer(self, request: Any, canned: Canned, finish: bool = True) -> Any:
        request.setResponseCode(canned.status)
        for name, value in canned.headers.items():
            request.setHeader(name, value)
        if isinstance(canned.body, bytes):
            body = canned.body
        else:
            request.setHeader("content-type", "application/json")
            body = json.dumps(canned.body).encode()
        if not finish:
            return body
        request.write(body)
        request.finish()


KEY = "sk-test-SECRET-0123456789"
"""The API key of test providers: it must never show up in logs or errors."""


def provider(kind: str, base_url: str, **overrides: Any) -> ProviderConfig:
    """A provider config for tests: a fixed secret key, short timeout, retries as given."""
    values: dict[str, Any] = {
        "kind": kind, "model": "test-model", "base_url": base_url, "api_key_env": "OPENCLAW_TEST_KEY",
        "api_key": KEY, "timeout": 5.0, "max_retries": 2,
    }
    values.update(overrides)
    return ProviderConfig(**values)


# OpenAI Chat Completions shapes.

def openai_text(text: str, prompt_tokens: int = 11, completion_tokens: int = 7) -> Canned:
    return Canned(body={
        "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def openai_tool_call(name: str, arguments: dict | str, call_id: str = "call_1") -> Canned:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Canned(body={
        "id": "chatcmpl-2", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}],
        }}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    })


def openai_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Canned:
    return Canned(status, {"error": {"message": message, "type": kind, "param": None, "code": None}}, headers or {})


# Anthropic Messages shapes.

def anthropic_text(text: str, input_tokens: int = 13, output_tokens: int = 4) -> Canned:
    return Canned(body={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "test-model",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    })


def anthropic_tool_use(name: str, input: dict, use_id: str = "toolu_1", text: str = "") -> Canned:
    content: list[dict] = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": use_id, "name": name, "input": input})
    return Canned(body={
        "id": "msg_2", "type": "message", "role": "assistant", "model": "test-model",
        "content": content, "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 9},
    })


def anthropic_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Canned:
    return Canned(status, {"type": "error", "error": {"type": kind, "message": message}}, headers or {})


# Collaborators of the brains and tools.

class FakeFacts:
    """Fixed answers for the ``Facts`` protocol."""

    def __init__(self, sessions: list[str] | None = None, last: str | None = None, next: str | None = None) -> None:
        self._sessions = sessions if sessions is not None else ["telegram:42", "webchat:abc"]
        self._beat = {"last": last, "next": next}

    def health_summary(self) -> str:
        return "all systems up"

    def sessions(self) -> list[str]:
        return list(self._sessions)

    def heartbeat(self) -> dict:
        return dict(self._beat)

    def checks(self) -> str:
        return "disk: ok"

    def report(self) -> str:
        return "3 messages today"


class MemoryStore:
    """The state half of ``IStore``, in a dict."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def get_state(self, key: str) -> Deferred:
        return succeed(self.state.get(key))

    def set_state(self, key: str, value: Any) -> Deferred:
        self.state[key] = value
        return succeed(None)


class RecordingSleep:
    """A ``sleep`` for brains that records the delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> Deferred:
        self.delays.append(delay)
        return succeed(None)


@contextmanager
def eliot_messages() -> Iterator[list[dict]]:
    """Every Eliot message written meanwhile, at every level (then the threshold is restored)."""
    messages: list[dict] = []
    previous = eliotutil._threshold
    eliotutil.set_threshold("trace")
    add_destinations(messages.append)
    try:
        yield messages
    finally:
        remove_destination(messages.append)
        eliotutil._threshold = previous


def model_brain(cls: type, url: str, store: MemoryStore | None = None, rounds: int = 4, history: int = 20,
                sleep: RecordingSleep | None = None, clock: Any = None, jitter: float = 0.0, **overrides: Any) -> Any:
    """A model brain of ``cls`` on ``url`` with remember/recall over ``store`` and a recording sleep."""
    store = store or MemoryStore()
    box = ToolBox([remember(store), recall(store)], ("remember", "recall"))
    kind = "openai" if cls.__name__.startswith("OpenAI") else "anthropic"
    return cls(provider(kind, url, **overrides), reactor, box, "be brief", rounds, history, {},
               sleep=sleep or RecordingSleep(), clock=clock, jitter=lambda: jitter)


def request(text: str = "hello", history: tuple = ()) -> BrainRequest:
    return BrainRequest(session_id="s1", text=text, history=list(history), event_id="e1")
