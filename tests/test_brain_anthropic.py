"""
The Anthropic Messages brain against a local fake Messages API llm.
"""

import json
from itertools import pairwise

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from openclaw.agent.anthropic import API_VERSION, MAX_TOKENS, AnthropicBrain, alternate
from openclaw.agent.base import BrainError
from tests.llm_servers import (
    KEY,
    MemoryStore,
    RecordingSleep,
    anthropic_error,
    anthropic_text,
    anthropic_tool_use,
    eliot_messages,
    model_brain,
    request,
)
from tests.strategies import anthropic_values


def make(url, **kw):
    return model_brain(AnthropicBrain, url, jitter=0.5, **kw)


@pytest_twisted.ensureDeferred
async def test_plain_reply_with_usage_and_request_shape(llm):
    llm.answer(anthropic_text("hi there", 13, 4))
    history = [{"role": "assistant", "text": "proactive hello"}, {"role": "user", "text": "a"},
               {"role": "assistant", "text": "b"}, {"role": "user", "text": "unanswered"}]
    reply = await make(llm.url).respond(request("hello", history))
    assert (reply.text, reply.provider, reply.tool_calls) == ("hi there", "anthropic:test-model", 0)
    assert reply.usage == {"input_tokens": 13, "output_tokens": 4}
    [sent] = llm.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == API_VERSION
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.body["model"] == "test-model"
    assert sent.body["max_tokens"] == MAX_TOKENS
    assert sent.body["system"] == "be brief"
    assert sent.body["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "unanswered\n\nhello"},
    ]
    assert sent.body["tools"][0] == {
        "name": "remember", "description": sent.body["tools"][0]["description"],
        "input_schema": {"type": "object", "additionalProperties": False, "required": ["key", "value"],
                         "properties": {"key": {"type": "string", "description": "a short name"},
                                        "value": {"type": "string", "description": "what to remember"}}},
    }


@pytest_twisted.ensureDeferred
async def test_tool_use_round_trip(llm):
    store = MemoryStore()
    store.state["memory:door code"] = "4711"
    llm.answer(anthropic_tool_use("recall", {"key": "door code"}, "toolu_7", text="Let me look."),
                  anthropic_text("The code is 4711."))
    reply = await make(llm.url, store=store).respond(request("door code?"))
    assert reply.text == "The code is 4711."
    assert reply.tool_calls == 1
    assert reply.usage == {"input_tokens": 43, "output_tokens": 13}
    follow = llm.requests[1].body["messages"]
    assert follow[-2] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_7", "name": "recall", "input": {"key": "door code"}},
    ]}
    assert follow[-1] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_7", "content": "4711", "is_error": False},
    ]}


@pytest_twisted.ensureDeferred
async def test_tool_errors_are_flagged(llm):
    llm.answer(anthropic_tool_use("recall", {"nope": 1}), anthropic_text("hm"))
    await make(llm.url).respond(request())
    [result] = llm.requests[1].body["messages"][-1]["content"]
    assert result["is_error"] is True
    assert result["content"].startswith("error: missing required argument 'key'")


@pytest_twisted.ensureDeferred
async def test_max_tool_rounds_then_one_answer_without_tools(llm):
    llm.answer(anthropic_tool_use("recall", {"key": "a"}, "t1"), anthropic_tool_use("recall", {"key": "b"}, "t2", "partial"))
    reply = await make(llm.url, rounds=1).respond(request())
    assert len(llm.requests) == 2
    assert [r.body.get("tool_choice") for r in llm.requests] == [None, {"type": "none"}]
    assert "tools" in llm.requests[1].body
    assert (reply.text, reply.tool_calls) == ("partial", 1)


@pytest_twisted.ensureDeferred
async def test_tool_use_blocks_without_tool_use_stop_are_not_run(llm):
    canned = anthropic_tool_use("recall", {"key": "a"}, text="done")
    canned.body["stop_reason"] = "end_turn"
    llm.answer(canned)
    reply = await make(llm.url).respond(request())
    assert (reply.text, reply.tool_calls, len(llm.requests)) == ("done", 0, 1)


@pytest_twisted.ensureDeferred
async def test_overloaded_529_and_429_retry(llm):
    sleep = RecordingSleep()
    llm.answer(anthropic_error(529, "overloaded_error", "Overloaded"),
                  anthropic_error(429, "rate_limit_error", "slow", {"retry-after": "4"}),
                  anthropic_text("ok"))
    reply = await make(llm.url, sleep=sleep).respond(request())
    assert reply.text == "ok"
    assert sleep.delays == [0.375, 4.0]


@pytest.mark.parametrize("status,kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                         (403, "permission_error"), (404, "not_found_error")])
@pytest_twisted.ensureDeferred
async def test_client_errors_are_final(llm, status, kind):
    llm.answer(anthropic_error(status, kind, f"nope {KEY}"))
    with eliot_messages() as messages, pytest.raises(BrainError) as e:
        await make(llm.url).respond(request("private words"))
    assert (e.value.status, e.value.retryable, len(llm.requests)) == (status, False, 1)
    assert kind in str(e.value) and KEY not in str(e.value)
    logged = json.dumps(messages, default=str)
    assert KEY not in logged and "private words" not in logged


@pytest_twisted.ensureDeferred
async def test_garbled_answer_is_retryable(llm):
    llm.answer(anthropic_error(200, "x", "y"))
    with pytest.raises(BrainError) as e:
        await make(llm.url, max_retries=0).respond(request())
    assert e.value.retryable and "unexpected response shape" in str(e.value)


def test_alternate():
    assert alternate([], "hi") == [{"role": "user", "content": "hi"}]
    assert alternate([{"role": "assistant", "text": "x"}], "hi") == [{"role": "user", "content": "hi"}]
    assert alternate([{"role": "user", "text": "a"}, {"role": "user", "text": "b"}], "c") == [
        {"role": "user", "content": "a\n\nb\n\nc"}]


@given(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "text": st.text(min_size=1)})),
       st.text(min_size=1))
def test_alternate_always_alternates_from_user(history, text):
    merged = alternate(history, text)
    assert merged[0]["role"] == "user" and merged[-1]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in pairwise(merged))
    assert merged[-1]["content"].endswith(text)


@given(st.dictionaries(st.sampled_from(["content", "usage", "stop_reason"]),
                       anthropic_values() | st.just("tool_use"), max_size=3))
def test_parser_only_raises_brain_errors(data):
    brain = make("http://127.0.0.1:1")
    try:
        turn = brain.parse_safely(data)
    except BrainError as e:
        assert e.retryable
    else:
        assert isinstance(turn.text, str)
        assert all(isinstance(v, int) for v in turn.usage.values())
