"""
Eliot helpers that give every action and message a ``log_level``.

Eliot has no levels of its own.  openclaw puts a ``log_level`` field on every
start, success and standalone message so destinations can filter, and
``enabled()`` lets hot paths skip building messages nobody will write.
"""

from typing import Any

from eliot import Action, log_message, start_action

LEVELS = {"error": 40, "warn": 30, "info": 20, "debug": 10, "trace": 5}

_threshold = LEVELS["info"]


def set_threshold(level: str) -> None:
    """Set the lowest level that is written anywhere (the ``--log-level``)."""
    global _threshold
    _threshold = LEVELS[level]


def enabled(level: str) -> bool:
    """Whether a message at ``level`` would be written."""
    return LEVELS[level] >= _threshold


def begin(action_type: str, level: str = "info", **fields: Any) -> Action:
    """
    Start an Eliot action whose start and success messages carry ``level``.

    Use it as ``with begin("openclaw:x", key=v): ...`` or, for Deferreds,
    with ``action.context()`` and ``DeferredContext(d).addActionFinish()``.
    A failed action's end message is written at ``error``.
    """
    action = start_action(action_type=action_type, log_level=level, **fields)
    action.add_success_fields(log_level=level)
    return action


def log(message_type: str, level: str = "info", **fields: Any) -> None:
    """Log one Eliot message at ``level``, if that level is enabled."""
    if LEVELS[level] >= _threshold:
        log_message(message_type=message_type, log_level=level, **fields)
