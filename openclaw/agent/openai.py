"""
The OpenAI Chat Completions brain: OpenAI itself and the many servers that
speak its API (OpenRouter, Ollama, vLLM, llama.cpp), chosen by ``base_url``.
"""

from __future__ import annotations

import json
from typing import Any

from openclaw.agent.base import BrainRequest
from openclaw.agent.http import FINAL, OFF, ModelBrain, ToolCall, Turn, usage_of


def parse_arguments(arguments: Any) -> Any:
    """
    A tool call's arguments: the spec sends a JSON string, some compatible
    servers an object.  Undecodable text is passed on as is, and the
    ToolBox tells the model it is not an object.
    """
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except (ValueError, RecursionError):
            return arguments
    return arguments


def parse_completion(data: dict) -> Turn:
    """The ``Turn`` in a Chat Completions response (``choices[0].message``)."""
    message = data["choices"][0]["message"]
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise TypeError("content is not text")
    calls = [
        ToolCall(
            id=str(call.get("id") or f"call_{n}"),
            name=str(call["function"]["name"]),
            args=parse_arguments(call["function"].get("arguments", {})),
        )
        for n, call in enumerate(message.get("tool_calls") or [])
    ]
    return Turn(
        text=content,
        calls=calls,
        usage=usage_of(data, "prompt_tokens", "completion_tokens"),
        raw=message,
    )


class OpenAIBrain(ModelBrain):
    """``POST {base_url}/chat/completions`` with a Bearer key (none for loopback servers without one)."""

    path = "/chat/completions"

    def headers(self, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def messages(self, request: BrainRequest) -> list[dict]:
        return (
            [{"role": "system", "content": self.system_prompt}]
            + [{"role": m["role"], "content": m["text"]} for m in self.history(request)]
            + [{"role": "user", "content": request.text}]
        )

    def body(self, messages: list[dict], mode: str) -> dict:
        body: dict = {"model": self.provider.model, "messages": messages}
        if mode != OFF:
            body["tools"] = self.toolbox.openai_tools()
        if mode == FINAL:
            body["tool_choice"] = "none"
        return body

    def parse(self, data: dict) -> Turn:
        return parse_completion(data)

    def followup(self, turn: Turn, results: list[str]) -> list[dict]:
        asked = {
            "role": "assistant",
            "content": turn.text or None,
            "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.args if isinstance(c.args, str) else json.dumps(c.args)}}
                for c in turn.calls
            ],
        }
        return [asked] + [
            {"role": "tool", "tool_call_id": c.id, "content": result} for c, result in zip(turn.calls, results)
        ]
