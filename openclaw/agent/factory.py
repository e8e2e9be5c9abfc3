"""
Build the brain the configuration asks for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from openclaw.agent.base import Facts
from openclaw.agent.rules import RulesBrain
from openclaw.agent.tools import Tool, ToolBox
from openclaw.config import BrainConfig
from openclaw.interfaces import IBrain


def make_brain(
    config: BrainConfig,
    reactor: Any,
    facts: Facts,
    tools: Sequence[Tool],
    environ: Mapping[str, str] = os.environ,
) -> IBrain:
    """
    The offline rules brain when no provider is configured; otherwise the
    providers in order behind a failover (even a single one, for its
    circuit breaker).  ``tools`` are all the tools the runtime can offer;
    only those in ``config.tools`` reach a model.  No I/O happens here.
    """
    if not config.providers:
        return RulesBrain(facts)
    # Model brains pull in treq and friends: only when configured, so the
    # offline default starts lean (docs/benchmarks.md).
    from openclaw.agent.anthropic import AnthropicBrain
    from openclaw.agent.failover import FailoverBrain
    from openclaw.agent.openai import OpenAIBrain

    kinds = {"openai": OpenAIBrain, "anthropic": AnthropicBrain}
    toolbox = ToolBox(tools, config.tools)
    brains = [
        kinds[p.kind](p, reactor, toolbox, config.system_prompt, config.max_tool_rounds, config.history, environ)
        for p in config.providers
    ]
    return FailoverBrain(brains, reactor)
