"""
The OpenAI-compatible brain against a local fake Chat Completions llm,
and the shared HTTP plumbing (retryable statuses, keys, error bodies).
"""

import json

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import Clock

from openclaw.agent.base import BrainError
from openclaw.agent.http import (
    MAX_WAIT,
    api_key,
    error_kind,
    is_loopback,
    is_retryable,
)
from openclaw.agent.openai import OpenAIBrain, parse_arguments
from openclaw.agent.tools import ToolBox
from tests.llm_servers import (
    KEY,
    Canned,
    MemoryStore,
    RecordingSleep,
    eliot_messages,
    model_brain,
    openai_error,
    openai_text,
    openai_tool_call,
    provider,
    request,
)
from tests.strategies import openai_values


def make(url, **kw):
    return model_brain(OpenAIBrain, url, jitter=0.0, **kw)


@pytest_twisted.ensureDeferred
async def test_plain_reply_with_usage_and_request_shape(llm):
    llm.answer(openai_text("hi there", 11, 7))
    history = [{"role": "user", "text": f"m{n}"} for n in range(5)]
    reply = await make(llm.url, history=2).respond(request("hello", history))
    assert (reply.text, reply.provider, reply.tool_calls) == ("hi there", "openai:test-model", 0)
    assert reply.usage == {"input_tokens": 11, "output_tokens": 7}
    [sent] = llm.requests
    assert sent.path == "/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body["model"] == "test-model"
    assert sent.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "m3"},
        {"role": "user", "content": "m4"},
        {"role": "user", "content": "hello"},
    ]
    assert [t["function"]["name"] for t in sent.body["tools"]] == ["remember", "recall"]
    assert sent.body["tools"][1]["type"] == "function"
    assert "tool_choice" not in sent.body


@pytest_twisted.ensureDeferred
async def test_tool_call_round_trip(llm):
    store = MemoryStore()
    store.state["memory:wifi"] = "hunter2-network"
    llm.answer(openai_tool_call("recall", {"key": "wifi"}, "call_9"), openai_text("It is hunter2-network."))
    reply = await make(llm.url, store=store).respond(request("what is the wifi?"))
    assert reply.text == "It is hunter2-network."
    assert reply.tool_calls == 1
    assert reply.usage == {"input_tokens": 31, "output_tokens": 12}
    follow = llm.requests[1].body["messages"]
    assert follow[-2]["role"] == "assistant"
    assert follow[-2]["tool_calls"][0]["id"] == "call_9"
    assert json.loads(follow[-2]["tool_calls"][0]["function"]["arguments"]) == {"key": "wifi"}
    assert follow[-1] == {"role": "tool", "tool_call_id": "call_9", "content": "hunter2-network"}


@pytest_twisted.ensureDeferred
async def test_bad_tool_arguments_go_back_to_the_model(llm):
    llm.answer(openai_tool_call("recall", "{not json"), openai_tool_call("launch", {}), openai_text("sorry"))
    reply = await make(llm.url).respond(request())
    assert reply.text == "sorry"
    assert llm.requests[1].body["messages"][-1]["content"].startswith("error: arguments must be a JSON object")
    assert llm.requests[2].body["messages"][-1]["content"].startswith("error: unknown tool 'launch'")


@pytest_twisted.ensureDeferred
async def test_max_tool_rounds_then_one_answer_without_tools(llm):
    llm.answer(*[openai_tool_call("recall", {"key": "x"}, f"c{n}") for n in range(3)])
    reply = await make(llm.url, rounds=2).respond(request())
    assert len(llm.requests) == 3
    assert [r.body.get("tool_choice") for r in llm.requests] == [None, None, "none"]
    assert reply.tool_calls == 2
    assert reply.text == ""


@pytest_twisted.ensureDeferred
async def test_no_tools_offered_when_rounds_are_zero(llm):
    llm.answer(openai_text("ok"))
    await make(llm.url, rounds=0).respond(request())
    assert "tools" not in llm.requests[0].body


@pytest_twisted.ensureDeferred
async def test_429_honours_retry_after(llm):
    sleep = RecordingSleep()
    llm.answer(openai_error(429, "rate_limit_exceeded", "slow down", {"Retry-After": "7"}), openai_text("ok"))
    reply = await make(llm.url, sleep=sleep).respond(request())
    assert reply.text == "ok"
    assert sleep.delays == [7.0]


@pytest_twisted.ensureDeferred
async def test_retry_after_beyond_the_limit_gives_up_at_once(llm):
    sleep = RecordingSleep()
    llm.answer(openai_error(429, "rate_limit_exceeded", "later", {"Retry-After": str(MAX_WAIT + 1)}))
    with pytest.raises(BrainError) as e:
        await make(llm.url, sleep=sleep).respond(request())
    assert (e.value.status, e.value.retryable, sleep.delays) == (429, True, [])


@pytest_twisted.ensureDeferred
async def test_500_then_success_backs_off(llm):
    sleep = RecordingSleep()
    llm.answer(Canned(500, b"oops"), Canned(502, b"bad gateway"), openai_text("ok"))
    reply = await make(llm.url, sleep=sleep).respond(request())
    assert reply.text == "ok"
    assert sleep.delays == [0.25, 0.5]  # the random half of "equal jitter" at 0


@pytest_twisted.ensureDeferred
async def test_retries_run_out(llm):
    llm.answer(*[Canned(503, b"")] * 3)
    with pytest.raises(BrainError) as e:
        await make(llm.url, max_retries=2).respond(request())
    assert (e.value.status, e.value.retryable, len(llm.requests)) == (503, True, 3)


@pytest_twisted.ensureDeferred
async def test_401_is_not_retried_and_keeps_the_key_out(llm):
    sleep = RecordingSleep()
    llm.answer(openai_error(401, "invalid_request_error", f"Incorrect API key provided: {KEY}"))
    with pytest.raises(BrainError) as e:
        await make(llm.url, sleep=sleep).respond(request())
    assert (e.value.status, e.value.retryable, len(llm.requests), sleep.delays) == (401, False, 1, [])
    assert KEY not in str(e.value)
    assert "invalid_request_error" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_timeout_is_retryable(llm):
    clock = Clock()
    llm.answer(Canned(hang=True))
    d = make(llm.url, clock=clock, timeout=3.0, max_retries=0).respond(request())
    await llm.received(1)
    clock.advance(3.0)
    with pytest.raises(BrainError) as e:
        await d
    assert e.value.retryable and e.value.status is None
    assert "no answer within 3s" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_retried(llm):
    url = llm.url
    await llm.stop()
    sleep = RecordingSleep()
    with pytest.raises(BrainError) as e:
        await make(url, sleep=sleep, max_retries=1).respond(request())
    assert e.value.retryable and len(sleep.delays) == 1
    llm.start()  # the fixture stops it again


@pytest.mark.parametrize("canned", [
    Canned(200, b"<html>not json</html>"),
    Canned(200, {"choices": []}),
    Canned(200, [1, 2]),
    Canned(200, {"choices": [{"message": {"content": 5}}]}),
])
@pytest_twisted.ensureDeferred
async def test_malformed_responses_are_retryable_errors(llm, canned):
    llm.answer(canned)
    with pytest.raises(BrainError) as e:
        await make(llm.url, max_retries=0).respond(request())
    assert e.value.retryable


@pytest_twisted.ensureDeferred
async def test_missing_key_fails_before_any_request():
    brain = OpenAIBrain(
        provider("openai", "https://api.example.invalid/v1", api_key=""), reactor, ToolBox([], ()), "", 1, 5, {},
    )
    with pytest.raises(BrainError) as e:
        await brain.respond(request())
    assert not e.value.retryable
    assert "OPENCLAW_TEST_KEY" in str(e.value)


@pytest_twisted.ensureDeferred
async def test_loopback_server_needs_no_key(llm):
    llm.answer(openai_text("local"))
    reply = await make(llm.url, api_key="").respond(request())
    assert reply.text == "local"
    assert "authorization" not in llm.requests[0].headers


@pytest_twisted.ensureDeferred
async def test_key_and_text_never_logged(llm):
    secret_text = "my bank password is swordfish"
    llm.answer(openai_tool_call("remember", {"key": "bank", "value": secret_text}), openai_text("noted"),
                  openai_error(401, "invalid_api_key", f"bad key {KEY}"))
    with eliot_messages() as messages:
        await make(llm.url).respond(request(secret_text))
        with pytest.raises(BrainError):
            await make(llm.url, max_retries=0).respond(request(secret_text))
    logged = json.dumps(messages, default=str)
    assert "openai:test-model" in logged and "openclaw:brain:tool" in logged
    assert KEY not in logged
    assert "swordfish" not in logged


# The shared plumbing, pure.

def test_retryable_statuses():
    assert [s for s in (400, 401, 403, 404, 408, 422, 429, 500, 503, 529) if is_retryable(s)] == [408, 429, 500, 503, 529]


@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:11434/v1", True), ("http://localhost:8000", True), ("http://[::1]:8000/v1", True),
    ("http://127.9.9.9", True), ("https://api.openai.com/v1", False), ("http://10.0.0.5:8000", False),
])
def test_is_loopback(url, expected):
    assert is_loopback(url) is expected


def test_api_key_sources():
    p = provider("openai", "https://api.openai.com/v1", api_key="")
    assert api_key(p, {"OPENCLAW_TEST_KEY": "from-env"}) == "from-env"
    assert api_key(provider("openai", "https://x", api_key="inline"), {"OPENCLAW_TEST_KEY": "env"}) == "inline"
    with pytest.raises(BrainError):
        api_key(p, {})


@pytest.mark.parametrize("body,expected", [
    (b'{"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "sk-x"}}', "invalid_api_key"),
    (b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}', "overloaded_error"),
    (b'{"error": "plain"}', ""), (b"[]", ""), (b"nope", ""), (b'{"error": {"type": "a b;c"}}', "abc"),
])
def test_error_kind(body, expected):
    assert error_kind(body) == expected


def test_parse_arguments():
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments({"a": 1}) == {"a": 1}
    assert parse_arguments("{broken") == "{broken"


@given(st.dictionaries(st.sampled_from(["choices", "usage", "id"]), openai_values(), max_size=3))
def test_parser_only_raises_brain_errors(data):
    brain = make("http://127.0.0.1:1")
    try:
        turn = brain.parse_safely(data)
    except BrainError as e:
        assert e.retryable
    else:
        assert isinstance(turn.text, str)
        assert all(isinstance(v, int) for v in turn.usage.values())
