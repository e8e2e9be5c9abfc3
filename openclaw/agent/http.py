"""
What the HTTP model brains share: keys, timeouts, retries with backoff, and
the tool-call loop.

``openai.py`` and ``anthropic.py`` only say how their API spells a request,
a reply and a tool result (the ``ModelBrain`` hooks).  The transport is the
shared ``openclaw.http.HTTPClient``; what is model-specific here is the
retry policy around it.  Deciding when to retry and how long to wait is
pure (``is_retryable`` here, the backoff policy and ``retry_after`` in
``openclaw.backoff``) so tests drive it without a network or a clock.
"""

from __future__ import annotations

import ipaddress
import os
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from eliot import current_action
from eliot.twisted import DeferredContext
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from zope.interface import implementer

from openclaw.agent.base import BrainError, BrainReply, BrainRequest, empty_usage
from openclaw.agent.tools import ToolBox
from openclaw.backoff import backoff_policy
from openclaw.config import ProviderConfig
from openclaw.eliotutil import action_type, begin, log, message_type, typed
from openclaw.http import HTTPClient
from openclaw.interfaces import IBrain

MAX_WAIT = 30.0
"""Longest pause before a retry; a provider asking for more is skipped (failover moves on)."""

BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
BACKOFF_JITTER = 0.5
"""Retries wait 0.25-0.5 s, 0.5-1 s, 1-2 s ... at most 20 s ("equal jitter"), unless the server says how long."""


PROVIDER = typed("provider", [str], "the model provider and model")
ATTEMPT = typed("attempt", [int], "0 for the first request")
BRAIN_RESPOND = action_type("openclaw:brain:respond", [
    PROVIDER, typed("text_length", [int], "characters of the message"),
    typed("history_length", [int], "earlier messages sent along"),
], [
    typed("reply_length", [int], "characters of the reply"), typed("tool_calls", [int], "tools called"),
    typed("input_tokens", [int], "input tokens, all rounds"), typed("output_tokens", [int], "output tokens, all rounds"),
], "one model answer, with its tool rounds")
BRAIN_HTTP = message_type("openclaw:brain:http", [
    PROVIDER, typed("status", [int], "HTTP status"), ATTEMPT, typed("response_length", [int], "bytes received"),
], "one HTTP response from a model API", "debug")
BRAIN_RETRY = message_type("openclaw:brain:retry", [
    PROVIDER, typed("status", [int, None], "HTTP status, none for a transport error"), ATTEMPT,
    typed("delay", [int, float], "seconds before the retry"), typed("reason", [str], "the error"),
], "a model request failed and is retried", "warn")


def is_retryable(status: int) -> bool:
    """429, 408 and every 5xx (including Anthropic's 529 overloaded) may pass; other 4xx will not."""
    return status in (408, 429) or status >= 500


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine, where keyless local servers (Ollama) are fine."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key(provider: ProviderConfig, environ: Mapping[str, str]) -> str:
    """
    The provider's key: ``api_key``, else the ``api_key_env`` variable.  A
    missing key is an error, except for loopback servers that need none.
    """
    key = provider.api_key or environ.get(provider.api_key_env, "")
    if not key and not is_loopback(provider.base_url):
        raise BrainError(
            f"{provider.kind}:{provider.model}: no API key (set {provider.api_key_env} or api_key)",
            retryable=False,
        )
    return key


def error_kind(body: bytes) -> str:
    """
    The machine-readable error type of an API error body (OpenAI's
    ``error.code``/``error.type``, Anthropic's ``error.type``), or ``""``.
    The human message is left out: some APIs echo part of the key in it.
    """
    try:
        error = orjson.loads(body).get("error")
        kind = error.get("code") or error.get("type")
    except (ValueError, AttributeError, TypeError):
        return ""
    if not isinstance(kind, str):
        return ""
    return "".join(c for c in kind[:60] if c.isalnum() or c in "_-.")


def decode_json(body: bytes, label: str) -> dict:
    """A JSON object from ``body``, else a retryable ``BrainError`` (a garbled answer may not repeat)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BrainError(f"{label}: response is not JSON", retryable=True) from None
    if not isinstance(data, dict):
        raise BrainError(f"{label}: response is not a JSON object", retryable=True)
    return data


def usage_of(data: dict, input_key: str, output_key: str) -> dict:
    """
    ``{"input_tokens", "output_tokens"}`` from a response's ``usage``
    object under the API's names; 0 for a count that is missing or nonsense.
    """
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}

    def count(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    return {"input_tokens": count(usage.get(input_key)), "output_tokens": count(usage.get(output_key))}


class JSONPoster:
    """
    POSTs JSON and returns the decoded JSON answer, with a per-attempt
    timeout and retries on retryable failures.  ``clock`` times out
    requests; ``sleep`` waits between attempts (tests record delays with it).
    """

    def __init__(
        self,
        reactor: Any,
        label: str,
        timeout: float,
        max_retries: int,
        clock: IReactorTime | None = None,
        sleep: Callable[[float], Deferred] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._label = label
        self._timeout = timeout
        self._max_retries = max_retries
        self._clock = clock or reactor
        self._sleep = sleep or (lambda delay: deferLater(self._clock, delay))
        self._backoff = backoff_policy(BACKOFF_BASE, BACKOFF_CAP, jitter=BACKOFF_JITTER, rand=jitter)
        # Not pooled: a brain has no stop to close idle connections at.
        self._http = HTTPClient(reactor, label, clock=self._clock, persistent=False, timeout=timeout)

    @inlineCallbacks
    def post(self, url: str, headers: dict[str, str], body: dict):
        """Fire with the response's JSON object or fail with a ``BrainError``."""
        for attempt in range(self._max_retries + 1):
            wait = None
            try:
                response = yield self._http.request("POST", url, headers=headers, json=body)
            except DeferredTimeout:
                error = BrainError(f"{self._label}: no answer within {self._timeout:g}s", retryable=True)
            except Exception as e:  # noqa: BLE001 - any transport failure (DNS, refused, reset) may pass
                error = BrainError(f"{self._label}: request failed: {type(e).__name__}", retryable=True)
            else:
                log(BRAIN_HTTP, "debug", provider=self._label, status=response.status,
                    attempt=attempt, response_length=len(response.body))
                if 200 <= response.status < 300:
                    return decode_json(response.body, self._label)
                kind = error_kind(response.body)
                error = BrainError(
                    f"{self._label}: HTTP {response.status}" + (f" {kind}" if kind else ""),
                    retryable=is_retryable(response.status),
                    status=response.status,
                )
                wait = response.retry_after
            if not error.retryable or attempt == self._max_retries:
                raise error
            delay = wait if wait is not None else self._backoff(attempt)
            if delay > MAX_WAIT:
                raise error
            log(BRAIN_RETRY, "warn", provider=self._label, status=error.status,
                attempt=attempt, delay=delay, reason=str(error))
            yield self._sleep(delay)


@dataclass(frozen=True)
class ToolCall:
    """A tool the model asked for; ``args`` is whatever it sent (checked by the ToolBox)."""

    id: str
    name: str
    args: Any


@dataclass(frozen=True)
class Turn:
    """One model answer: its text, the tools it wants, the tokens it cost, and itself as the API spells it."""

    text: str
    calls: list[ToolCall]
    usage: dict
    raw: Any = field(default=None, compare=False)


ON, FINAL, OFF = "on", "final", "off"
"""Tool modes of a request: offer tools; show them but forbid calls (the last round); none at all."""


@implementer(IBrain)
class ModelBrain(ABC):
    """
    The tool-call loop around one provider.  After ``max_tool_rounds``
    rounds of tool calls the model is asked once more with tool calls
    forbidden (``tool_choice`` none), and whatever text it gives is the reply.
    Subclasses say how their API spells things.
    """

    path = ""

    uses_history = True

    def __init__(
        self,
        provider: ProviderConfig,
        reactor: Any,
        toolbox: ToolBox,
        system_prompt: str,
        max_tool_rounds: int,
        history_limit: int,
        environ: Mapping[str, str] = os.environ,
        *,
        clock: IReactorTime | None = None,
        sleep: Callable[[float], Deferred] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.name = f"{provider.kind}:{provider.model}"
        self.provider = provider
        self.toolbox = toolbox
        self.system_prompt = system_prompt
        self.max_tool_rounds = max_tool_rounds
        self.history_limit = history_limit
        self._environ = environ
        self._poster = JSONPoster(reactor, self.name, provider.timeout, provider.max_retries, clock, sleep, jitter)

    # What subclasses spell.

    @abstractmethod
    def headers(self, key: str) -> dict[str, str]:
        """The request headers, authentication included (``key`` may be empty for local servers)."""

    @abstractmethod
    def messages(self, request: BrainRequest) -> list[dict]:
        """The first request's conversation: history (see ``history``) and the new message."""

    @abstractmethod
    def body(self, messages: list[dict], mode: str) -> dict:
        """The request body for ``messages`` with tools ``ON``, ``FINAL`` or ``OFF``."""

    @abstractmethod
    def parse(self, data: dict) -> Turn:
        """A response's ``Turn``; may raise lookup/type errors on odd shapes (see ``parse_safely``)."""

    @abstractmethod
    def followup(self, turn: Turn, results: list[str]) -> list[dict]:
        """The messages that echo ``turn`` and carry the tool ``results`` (in call order)."""

    # The loop.

    def history(self, request: BrainRequest) -> list[dict]:
        """The last ``history_limit`` usable past messages."""
        usable = [
            m for m in request.history
            if isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("text"), str) and m["text"]
        ]
        return usable[-self.history_limit:] if self.history_limit > 0 else []

    def parse_safely(self, data: dict) -> Turn:
        """``parse``, with any surprise in the response's shape as a retryable ``BrainError``."""
        try:
            return self.parse(data)
        except BrainError:
            raise
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            raise BrainError(f"{self.name}: unexpected response shape ({type(e).__name__})", retryable=True) from None

    def respond(self, request: BrainRequest) -> Deferred:
        action = begin(BRAIN_RESPOND, provider=self.name, text_length=len(request.text),
                       history_length=len(request.history))
        with action.context():
            return DeferredContext(self._respond(request)).addActionFinish()

    @inlineCallbacks
    def _respond(self, request: BrainRequest):
        headers = self.headers(api_key(self.provider, self._environ))
        url = self.provider.base_url + self.path
        offer = bool(self.toolbox) and self.max_tool_rounds > 0
        messages = self.messages(request)
        usage, calls = empty_usage(), 0
        for round_ in range(self.max_tool_rounds + 1):
            mode = OFF if not offer else FINAL if round_ == self.max_tool_rounds else ON
            data = yield self._poster.post(url, headers, self.body(messages, mode))
            turn = self.parse_safely(data)
            for k in usage:
                usage[k] += turn.usage.get(k, 0)
            if not turn.calls or mode != ON:
                break
            results = []
            for call in turn.calls:
                results.append((yield self.toolbox.run(call.name, call.args)))
            calls += len(turn.calls)
            messages = messages + self.followup(turn, results)
        current_action().add_success_fields(reply_length=len(turn.text), tool_calls=calls, **usage)
        return BrainReply(text=turn.text, provider=self.name, usage=usage, tool_calls=calls)
