"""
The Anthropic Messages API brain.
"""

from __future__ import annotations

from openclaw.agent.base import BrainRequest
from openclaw.agent.http import FINAL, OFF, ModelBrain, ToolCall, Turn, usage_of

API_VERSION = "2023-06-01"
MAX_TOKENS = 1024
"""Reply length cap the Messages API requires; chat replies are short."""


def alternate(history: list[dict], text: str) -> list[dict]:
    """
    Messages that start with ``user`` and alternate roles, ending with
    ``text``: leading assistant turns are dropped and consecutive turns of
    one role (an unanswered message, say) are joined, as the API expects.
    """
    merged: list[dict] = []
    for m in history + [{"role": "user", "text": text}]:
        if not merged and m["role"] != "user":
            continue
        if merged and merged[-1]["role"] == m["role"]:
            merged[-1]["content"] += "\n\n" + m["text"]
        else:
            merged.append({"role": m["role"], "content": m["text"]})
    return merged


def parse_message(data: dict) -> Turn:
    """The ``Turn`` in a Messages API response (``content`` blocks)."""
    blocks = data["content"]
    if not isinstance(blocks, list):
        raise TypeError("content is not a list")
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("text block without text")
    calls = [
        ToolCall(id=str(b["id"]), name=str(b["name"]), args=b.get("input", {}))
        for b in blocks
        if b.get("type") == "tool_use"
    ] if data.get("stop_reason") == "tool_use" else []
    return Turn(
        text="".join(texts),
        calls=calls,
        usage=usage_of(data, "input_tokens", "output_tokens"),
        raw=blocks,
    )


class AnthropicBrain(ModelBrain):
    """``POST {base_url}/v1/messages`` with ``x-api-key``."""

    path = "/v1/messages"

    def headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key, "anthropic-version": API_VERSION, "content-type": "application/json"}

    def messages(self, request: BrainRequest) -> list[dict]:
        return alternate(self.history(request), request.text)

    def body(self, messages: list[dict], mode: str) -> dict:
        body: dict = {"model": self.provider.model, "max_tokens": MAX_TOKENS,
                      "system": self.system_prompt, "messages": messages}
        if mode != OFF:
            body["tools"] = self.toolbox.anthropic_tools()
        if mode == FINAL:
            body["tool_choice"] = {"type": "none"}
        return body

    def parse(self, data: dict) -> Turn:
        return parse_message(data)

    def followup(self, turn: Turn, results: list[str]) -> list[dict]:
        return [
            {"role": "assistant", "content": turn.raw},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": c.id, "content": result, "is_error": result.startswith("error:")}
                for c, result in zip(turn.calls, results)
            ]},
        ]
