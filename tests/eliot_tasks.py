"""
Reading Eliot tasks back in tests: the tasks of inbound connector messages,
from the test's validating logger (``eliot_logger.messages``) or a JSON log.
"""

from __future__ import annotations

from typing import Any

INBOUND = "openclaw:connector:inbound"
#: What one answered message's task holds, from the receive to the sent reply.
RECEIVE_TO_SENT = {
    (INBOUND, "started"), (INBOUND, "succeeded"),
    ("openclaw:message", "started"), ("openclaw:message", "succeeded"),
    ("openclaw:outbox:deliver", "succeeded"), ("openclaw:connector:send", "succeeded"),
}


def kind(message: dict) -> tuple[str, str | None]:
    return message.get("action_type") or message.get("message_type"), message.get("action_status")


def inbound_tasks(messages: list[dict], connector: str) -> list[list[dict]]:
    """Each task that an inbound message of ``connector`` started, its messages in logged order."""
    roots = [m["task_uuid"] for m in messages
             if kind(m) == (INBOUND, "started") and m.get("connector") == connector]
    return [[m for m in messages if m["task_uuid"] == root] for root in roots]


def answered(messages: list[dict], connector: str, count: int) -> bool:
    """Whether ``count`` inbound tasks of ``connector`` are each complete from receive to sent."""
    tasks = inbound_tasks(messages, connector)
    return len(tasks) >= count and all(RECEIVE_TO_SENT <= {kind(m) for m in task} for task in tasks)


def assert_one_task_per_message(messages: list[dict], connector: str, count: int) -> list[list[dict]]:
    """
    ``count`` inbound messages, each its own top-level task from the receive
    to the reply's send, naming the connection it came on; the connection's
    own task holds none of them.  :return: the tasks.
    """
    tasks = inbound_tasks(messages, connector)
    assert len(tasks) == count, [kind(t[0]) for t in tasks]
    connections = {m["task_uuid"] for m in messages
                   if kind(m) == ("openclaw:connector:connection", "started") and m["connector"] == connector}
    for task in tasks:
        root = task[0]
        assert root["task_level"] == [1] and kind(root) == (INBOUND, "started")
        assert root["connection_task"] in connections and root["connection_task"] != root["task_uuid"]
        assert RECEIVE_TO_SENT <= {kind(m) for m in task}, sorted(map(str, {kind(m) for m in task}))
        (send,) = [m for m in task if kind(m) == ("openclaw:connector:send", "started")]
        (event,) = [m for m in task if kind(m) == ("openclaw:message", "started")]
        assert send["connector"] == connector and send["dedupe_key"] == f"reply:{event['event_id']}"
    in_connections = [m for m in messages if m["task_uuid"] in connections and kind(m)[0].startswith("openclaw:message")]
    assert in_connections == []
    return tasks


def one_task(messages: list[dict], connector: str) -> Any:
    """The task uuid of the one inbound message of ``connector``."""
    (task,) = inbound_tasks(messages, connector)
    return task[0]["task_uuid"]
