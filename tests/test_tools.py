"""
The ToolBox (allowlist, rendering, argument checks, failures as text) and
the five tools.
"""

import json

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.web.resource import Resource
from twisted.web.server import Site

from openclaw.agent.tools import (
    RESULT_LIMIT,
    Tool,
    ToolBox,
    all_tools,
    check_args,
    get_status,
    http_check,
    recall,
    remember,
    send_message,
)
from openclaw.config import TOOL_NAMES
from tests.llm_servers import FakeFacts, MemoryStore

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"},
                                           "f": {"type": "number"}, "b": {"type": "boolean"}},
          "required": ["n"]}


def echo(name="echo", result=None):
    return Tool(name, "echo the args", SCHEMA, lambda args: result if result is not None else args)


def test_allowlist_filters_and_renders():
    box = ToolBox([echo("a"), echo("b"), echo("c")], ("c", "a", "zzz"))
    assert box.names == ["a", "c"]
    assert [t["function"]["name"] for t in box.openai_tools()] == ["a", "c"]
    assert box.openai_tools()[0] == {"type": "function", "function": {
        "name": "a", "description": "echo the args", "parameters": SCHEMA}}
    assert box.anthropic_tools()[1] == {"name": "c", "description": "echo the args", "input_schema": SCHEMA}
    assert not ToolBox([echo()], ())


@pytest.mark.parametrize("args,problem", [
    ({"n": 1}, None),
    ({"n": 1, "s": "x", "f": 1.5, "b": True}, None),
    ({"n": 1, "f": 2}, None),
    ({}, "missing required argument 'n'"),
    ({"n": "1"}, "argument 'n' must be integer"),
    ({"n": True}, "argument 'n' must be integer"),
    ({"n": 1, "b": 1}, "argument 'b' must be boolean"),
    ({"n": 1, "extra": 0}, "unknown argument 'extra'"),
    ("{}", "arguments must be a JSON object"),
    (None, "arguments must be a JSON object"),
])
def test_check_args(args, problem):
    assert check_args(SCHEMA, args) == problem


@given(st.recursive(st.none() | st.integers() | st.text() | st.booleans(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_check_args_never_raises(args):
    assert check_args(SCHEMA, args) is None or isinstance(check_args(SCHEMA, args), str)


@pytest.mark.parametrize("tool,name,args,expected", [
    (echo(), "echo", {"n": 1}, '{"n": 1}'),
    (echo(result="plain"), "echo", {"n": 1}, "plain"),
    (echo(), "nope", {}, "error: unknown tool 'nope'; available: echo"),
    (echo(), "echo", {"n": "x"}, "error: argument 'n' must be integer"),
    (Tool("boom", "", {}, lambda args: 1 / 0), "boom", {}, "error: boom failed: division by zero"),
    (Tool("later", "", {}, lambda args: fail(OSError("disk gone"))), "later", {}, "error: later failed: disk gone"),
    (Tool("big", "", {}, lambda args: succeed("x" * (RESULT_LIMIT + 10))), "big", {}, "x" * RESULT_LIMIT + " [cut]"),
])
@pytest_twisted.ensureDeferred
async def test_run_never_raises(tool, name, args, expected):
    assert await ToolBox([tool], (tool.name,)).run(name, args) == expected


@pytest_twisted.ensureDeferred
async def test_send_message_only_to_known_sessions():
    sent = []
    tool = send_message(lambda session, text: succeed(sent.append((session, text))), lambda: ["telegram:42"])
    box = ToolBox([tool], ("send_message",))
    assert await box.run("send_message", {"session_id": "telegram:42", "text": "hi"}) == "queued"
    refused = await box.run("send_message", {"session_id": "sms:1", "text": "hi"})
    assert refused == "error: unknown session 'sms:1'; known: telegram:42"
    assert sent == [("telegram:42", "hi")]


@pytest_twisted.ensureDeferred
async def test_get_status():
    box = ToolBox([get_status(FakeFacts(last="t1"))], ("get_status",))
    assert json.loads(await box.run("get_status", {})) == {
        "health": "all systems up", "sessions": ["telegram:42", "webchat:abc"],
        "heartbeat": {"last": "t1", "next": None}, "checks": "disk: ok"}


@pytest_twisted.ensureDeferred
async def test_remember_and_recall_use_memory_keys():
    store = MemoryStore()
    box = ToolBox([remember(store), recall(store)], ("remember", "recall"))
    assert await box.run("recall", {"key": "wifi"}) == "nothing remembered under 'wifi'"
    assert await box.run("remember", {"key": " WiFi ", "value": "pw123"}) == "remembered 'wifi'"
    assert store.state == {"memory:wifi": "pw123"}
    assert await box.run("recall", {"key": "wifi"}) == "pw123"
    assert await box.run("remember", {"key": " ", "value": "x"}) == "error: the key must not be empty"


class Page(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setResponseCode(203)
        request.setHeader("content-type", "text/plain")
        return b"hello"


@pytest_twisted.ensureDeferred
async def test_http_check_reports_status_and_type():
    port = reactor.listenTCP(0, Site(Page()), interface="127.0.0.1")
    try:
        box = ToolBox([http_check(reactor, 5.0)], ("http_check",))
        result = json.loads(await box.run("http_check", {"url": f"http://127.0.0.1:{port.getHost().port}/x"}))
    finally:
        await port.stopListening()
    assert result["status"] == 203 and result["content_type"] == "text/plain"
    assert result["elapsed_ms"] >= 0


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "example.com"])
@pytest_twisted.ensureDeferred
async def test_http_check_refuses_other_schemes(url):
    box = ToolBox([http_check(reactor, 5.0)], ("http_check",))
    assert await box.run("http_check", {"url": url}) == "error: only http and https URLs can be checked"


@pytest_twisted.ensureDeferred
async def test_http_check_connection_failure_is_text():
    port = reactor.listenTCP(0, Site(Page()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/"
    await port.stopListening()
    result = await ToolBox([http_check(reactor, 5.0)], ("http_check",)).run("http_check", {"url": url})
    assert result.startswith("error: http_check failed:")


def test_all_tools_are_the_five_config_names():
    tools = all_tools(reactor, FakeFacts(), MemoryStore(), lambda s, t: succeed(None), list)
    assert sorted(t.name for t in tools) == sorted(TOOL_NAMES)
    assert all(t.parameters["type"] == "object" for t in tools)
