"""
The ToolBox (allowlist, rendering, argument checks, failures as text) and
the five tools.
"""

import ipaddress
import json

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.server import Site

from openclaw import metrics
from openclaw.agent.http_check import FORBIDDEN, MAX_BYTES, refusal
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


LOCAL = ("127.0.0.1/32",)


def resolver(names: dict[str, list[str]]):
    """A fake DNS: ``names`` maps a host to its addresses; anything else does not resolve."""
    asked: list[str] = []

    def resolve(host: str):
        asked.append(host)
        return succeed(names.get(host, []))

    resolve.asked = asked
    return resolve


class Hops(Resource):
    """``/go?to=URL`` redirects there (302), ``/loop`` to itself, ``/big`` is 1 MiB, anything else 203 text."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[bytes] = []

    def render_GET(self, request):
        self.hits.append(request.path)
        if request.path == b"/go":
            request.redirect(request.args[b"to"][0])
            return b""
        if request.path == b"/loop":
            request.redirect(b"/loop")
            return b""
        if request.path == b"/big":
            return b"x" * (1024 * 1024)
        request.setResponseCode(203)
        request.setHeader("content-type", "text/plain")
        return b"hello " + (request.getHeader("host") or "").encode()


@pytest_twisted.async_yield_fixture
async def hops():
    resource = Hops()
    resource.port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    resource.base = f"http://127.0.0.1:{resource.port.getHost().port}"
    yield resource
    await resource.port.stopListening()


def checker(allow=LOCAL, names=None, on=reactor):
    resolve = resolver(names or {})
    box = ToolBox([http_check(on, 5.0, allow, resolve)], ("http_check",))
    return box, resolve


def refused_count(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_http_check_refused_total", {"reason": reason}) or 0.0


@pytest_twisted.ensureDeferred
async def test_http_check_reports_status_and_type_of_an_allowlisted_address(hops):
    box, _ = checker()
    result = json.loads(await box.run("http_check", {"url": hops.base + "/x"}))
    assert result["status"] == 203 and result["content_type"] == "text/plain"
    assert result["elapsed_ms"] >= 0 and result["redirects"] == 0 and not result["truncated"]


@pytest_twisted.ensureDeferred
async def test_a_name_connects_to_the_address_it_was_checked_at_with_its_own_host_header(hops):
    box, resolve = checker(names={"allowed.test": ["127.0.0.1"]})
    port = hops.port.getHost().port
    result = json.loads(await box.run("http_check", {"url": f"http://allowed.test:{port}/x"}))
    assert result["status"] == 203 and resolve.asked == ["allowed.test"]
    assert result["bytes_read"] == len(f"hello allowed.test:{port}")


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1:1/", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://0.0.0.0/", "this host"),
    ("http://10.1.2.3/", "private"),
    ("http://172.20.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "shared"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00::1]/", "private"),
    ("http://intranet.test/", "private"),  # a name: judged by what it resolves to
    ("http://metadata.test/", "cloud metadata"),
    ("http://mixed.test/", "loopback"),  # one bad address is enough
])
@pytest_twisted.ensureDeferred
async def test_local_private_and_metadata_addresses_are_refused_without_connecting(url, kind):
    memory = MemoryReactorClock()
    names = {"intranet.test": ["10.9.8.7"], "metadata.test": ["169.254.169.254"],
             "mixed.test": ["93.184.215.14", "127.0.0.1"]}
    box, _ = checker(allow=(), names=names, on=memory)
    before = refused_count("address")
    result = await box.run("http_check", {"url": url})
    assert result.startswith("error: refused: ") and f"is a {kind}" in result
    assert "brain.http_check_allow" in result
    assert memory.tcpClients == [] and refused_count("address") == before + 1


@pytest_twisted.ensureDeferred
async def test_a_public_address_is_let_through_to_connect():
    memory = MemoryReactorClock()
    box, _ = checker(allow=(), names={"example.test": ["93.184.215.14"]}, on=memory)
    d = box.run("http_check", {"url": "https://example.test/"})
    assert [(host, port) for host, port, *_ in memory.tcpClients] == [("93.184.215.14", 443)]
    memory.advance(10)  # nothing answers: the check times out, as text
    assert (await d).startswith("error: http_check failed:")


@pytest_twisted.ensureDeferred
async def test_a_redirect_is_checked_again_and_refused_before_it_connects(hops):
    box, resolve = checker(names={"metadata.test": ["169.254.169.254"]})
    result = await box.run("http_check", {"url": hops.base + "/go?to=http://metadata.test/latest/meta-data/"})
    assert result.startswith("error: refused: metadata.test (169.254.169.254) is a cloud metadata address")
    assert hops.hits == [b"/go"] and resolve.asked == ["metadata.test"]
    result = await box.run("http_check", {"url": hops.base + "/go?to=ftp://127.0.0.1/"})
    assert result == "error: refused: only http and https URLs can be checked"


@pytest_twisted.ensureDeferred
async def test_redirects_are_capped_and_a_followed_one_reports_where_it_ended(hops):
    box, _ = checker()
    before = refused_count("redirects")
    assert await box.run("http_check", {"url": hops.base + "/loop"}) == "error: refused: more than 5 redirects"
    assert len(hops.hits) == 6 and refused_count("redirects") == before + 1
    result = json.loads(await box.run("http_check", {"url": hops.base + "/go?to=/x"}))
    assert (result["status"], result["redirects"], result["url"]) == (203, 1, hops.base + "/x")


@pytest_twisted.ensureDeferred
async def test_at_most_64_kib_of_a_body_is_read(hops):
    box, _ = checker()
    result = json.loads(await box.run("http_check", {"url": hops.base + "/big"}))
    assert result["status"] == 200 and result["bytes_read"] == MAX_BYTES and result["truncated"]
    result = json.loads(await box.run("http_check", {"url": hops.base + "/x"}))  # and a normal check still works
    assert result["status"] == 203


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "example.com"])
@pytest_twisted.ensureDeferred
async def test_http_check_refuses_other_schemes(url):
    box, resolve = checker()
    assert await box.run("http_check", {"url": url}) == "error: refused: only http and https URLs can be checked"
    assert resolve.asked == []


@pytest_twisted.ensureDeferred
async def test_http_check_connection_failure_is_text():
    port = reactor.listenTCP(0, Site(Page()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/"
    await port.stopListening()
    box, _ = checker()
    result = await box.run("http_check", {"url": url})
    assert result.startswith("error: http_check failed:")


@given(st.ip_addresses())
def test_refusal_matches_the_forbidden_networks_and_the_allowlist_wins(address) -> None:
    text = str(address)
    kind = refusal(text)
    inside = [k for network, k in FORBIDDEN if network.version == address.version and address in network]
    mapped = getattr(address, "ipv4_mapped", None)
    if address in ipaddress.ip_network("64:ff9b::/96"):
        mapped = ipaddress.IPv4Address(address.packed[12:])
    if mapped is not None:
        assert kind == refusal(str(mapped))
    else:
        assert kind == (inside[0] if inside else None)
    assert refusal(text, [ipaddress.ip_network(f"{text}/{address.max_prefixlen}")]) is None


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_in_ipv6_clothing_is_judged_as_itself(address) -> None:
    assert refusal(f"::ffff:{address}") == refusal(str(address)) == refusal(f"64:ff9b::{address}")


def test_all_tools_are_the_five_config_names():
    tools = all_tools(reactor, FakeFacts(), MemoryStore(), lambda s, t: succeed(None), list)
    assert sorted(t.name for t in tools) == sorted(TOOL_NAMES)
    assert all(t.parameters["type"] == "object" for t in tools)
