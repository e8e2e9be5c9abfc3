"""
Failover across providers, the circuit breaker (on a Clock), and the
factory that builds brains from the config.
"""

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from openclaw.agent.anthropic import AnthropicBrain
from openclaw.agent.base import BrainError, BrainReply, BrainRequest
from openclaw.agent.factory import make_brain
from openclaw.agent.failover import CLOSED, HALF_OPEN, OPEN, Circuit, FailoverBrain
from openclaw.agent.openai import OpenAIBrain
from openclaw.agent.rules import RulesBrain
from openclaw.agent.tools import ToolBox, all_tools
from openclaw.config import BrainConfig
from openclaw.interfaces import IBrain
from tests.llm_servers import (
    FakeFacts,
    FakeLLM,
    MemoryStore,
    RecordingSleep,
    openai_text,
    provider,
)

REQUEST = BrainRequest("s1", "hi", [], "e1")


@implementer(IBrain)
class Scripted:
    """A brain that answers from a list: a string replies, an exception fails, a Deferred waits."""

    def __init__(self, name, *outcomes):
        self.name = name
        self.outcomes = list(outcomes)
        self.calls = 0

    def respond(self, request):
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            return fail(outcome)
        if isinstance(outcome, Deferred):
            return outcome
        return succeed(BrainReply(outcome, self.name))


def down(status=503, retryable=True):
    return BrainError(f"HTTP {status}", retryable=retryable, status=status)


@pytest_twisted.ensureDeferred
async def test_first_working_provider_answers():
    a, b = Scripted("a", "from a"), Scripted("b", "from b")
    reply = await FailoverBrain([a, b], Clock()).respond(REQUEST)
    assert (reply.text, reply.provider, a.calls, b.calls) == ("from a", "a", 1, 0)


@pytest.mark.parametrize("error", [down(503), down(401, retryable=False), RuntimeError("bug")])
@pytest_twisted.ensureDeferred
async def test_any_failure_moves_on(error):
    a, b = Scripted("a", error), Scripted("b", "from b")
    reply = await FailoverBrain([a, b], Clock()).respond(REQUEST)
    assert reply.provider == "b"


@pytest_twisted.ensureDeferred
async def test_all_failing_is_a_brain_error():
    brain = FailoverBrain([Scripted("a", down(401, False)), Scripted("b", down(429))], Clock())
    with pytest.raises(BrainError) as e:
        await brain.respond(REQUEST)
    assert e.value.retryable and e.value.status == 429
    assert "HTTP 401" in str(e.value) and "HTTP 429" in str(e.value)
    with pytest.raises(BrainError) as e:
        await FailoverBrain([Scripted("a", down(401, False))], Clock()).respond(REQUEST)
    assert not e.value.retryable


@pytest_twisted.ensureDeferred
async def test_circuit_opens_then_trial_closes_it():
    clock = Clock()
    a = Scripted("a", down(), down(), down(), down(), "a is back")
    b = Scripted("b", "from b")
    brain = FailoverBrain([a, b], clock, failure_threshold=3, reset_after=60)
    for _ in range(3):
        assert (await brain.respond(REQUEST)).provider == "b"
    assert brain.circuits[0].state(clock.seconds()) == OPEN
    assert (await brain.respond(REQUEST)).provider == "b"
    assert a.calls == 3
    clock.advance(60)
    assert brain.circuits[0].state(clock.seconds()) == HALF_OPEN
    assert (await brain.respond(REQUEST)).provider == "b"  # the trial failed: open again
    assert a.calls == 4
    clock.advance(59)
    await brain.respond(REQUEST)
    assert a.calls == 4
    clock.advance(1)
    reply = await brain.respond(REQUEST)
    assert (reply.provider, a.calls) == ("a", 5)
    assert brain.circuits[0].state(clock.seconds()) == CLOSED


@pytest_twisted.ensureDeferred
async def test_only_one_trial_call_at_a_time():
    clock = Clock()
    pending = Deferred()
    a = Scripted("a", down(), pending, "unused")
    brain = FailoverBrain([a, Scripted("b", "from b")], clock, failure_threshold=1, reset_after=10)
    await brain.respond(REQUEST)
    clock.advance(10)
    trial = brain.respond(REQUEST)
    assert (await brain.respond(REQUEST)).provider == "b"
    assert a.calls == 2
    pending.callback(BrainReply("a ok", "a"))
    assert (await trial).provider == "a"


@pytest_twisted.ensureDeferred
async def test_every_circuit_open():
    clock = Clock()
    brain = FailoverBrain([Scripted("a", down())], clock, failure_threshold=1, reset_after=10)
    with pytest.raises(BrainError):
        await brain.respond(REQUEST)
    with pytest.raises(BrainError) as e:
        await brain.respond(REQUEST)
    assert "circuit is open" in str(e.value) and e.value.retryable


def test_needs_a_brain():
    with pytest.raises(ValueError):
        FailoverBrain([], Clock())


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 100)), max_size=30))
def test_circuit_never_allows_an_open_provider_early(steps):
    """Whatever happened, a provider that failed `threshold` times in a row is not called before reset_after."""
    circuit, now, streak, last_failure = Circuit(3, 60), 0.0, 0, None
    for ok, wait in steps:
        now += wait
        allowed = circuit.allow(now)
        if streak >= 3 and now - last_failure < 60:
            assert not allowed
        if not allowed:
            continue
        if ok:
            circuit.succeeded()
            streak = 0
        else:
            circuit.failed(now)
            streak, last_failure = streak + 1, now


@pytest_twisted.ensureDeferred
async def test_failover_between_real_http_brains():
    good = FakeLLM().start()
    bad = FakeLLM().start()  # unscripted: answers 500
    try:
        good.answer(openai_text("from the good one"))
        brains = [
            OpenAIBrain(provider("openai", url, model=name, max_retries=0), reactor, ToolBox([], ()), "", 1, 5, {},
                        sleep=RecordingSleep())
            for url, name in ((bad.url, "bad"), (good.url, "good"))
        ]
        reply = await FailoverBrain(brains, Clock()).respond(REQUEST)
    finally:
        await good.stop()
        await bad.stop()
    assert (reply.text, reply.provider) == ("from the good one", "openai:good")
    assert len(bad.requests) == 1


def test_factory_rules_without_providers():
    assert isinstance(make_brain(BrainConfig(), reactor, FakeFacts(), []), RulesBrain)


def test_factory_failover_over_providers_with_allowlisted_tools():
    config = BrainConfig(
        providers=(provider("openai", "https://api.openai.com/v1"), provider("anthropic", "https://api.anthropic.com")),
        tools=("recall", "http_check"),
    )
    tools = all_tools(reactor, FakeFacts(), MemoryStore(), lambda s, t: succeed(None), list)
    brain = make_brain(config, reactor, FakeFacts(), tools)
    assert isinstance(brain, FailoverBrain) and IBrain.providedBy(brain)
    assert [type(b) for b in brain.brains] == [OpenAIBrain, AnthropicBrain]
    assert brain.brains[0].toolbox.names == ["http_check", "recall"]
    assert brain.name == "failover(openai:test-model,anthropic:test-model)"
