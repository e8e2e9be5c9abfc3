"""
Eliot helpers: declared action and message types, and a ``log_level`` on
every start, success and standalone message.

Eliot has no levels of its own.  openclaw puts a ``log_level`` field on every
start, success and standalone message so destinations can filter, and
``enabled()`` lets hot paths skip building messages nobody will write.

Types are declared once at the top of the module that emits them, Tahoe-LAFS
style, with ``message_type`` / ``action_type`` below: typed ``Field``s and a
description each.  ``log`` and ``begin`` take a declared type; they still
take a plain string name for parts not yet declared, and
``tests/test_eliot_types.py`` lists the modules where a string is refused, so
an undeclared type in them fails the suite.  Every declared type is in
``DECLARED`` (docs/logging.md's table is generated from it).
"""

import importlib
from typing import Any

from eliot import Action, ActionType, Field, MessageType, ValidationError, log_message, start_action

LEVELS = {"error": 40, "warn": 30, "info": 20, "debug": 10, "trace": 5}

_threshold = LEVELS["info"]



def _known_level(value: str) -> None:
    if value not in LEVELS:
        raise ValidationError(value, f"unknown log level {value!r}")


LOG_LEVEL = Field.for_types("log_level", [str], "error, warn, info, debug or trace", _known_level)

#: Every declared type by name: ``MessageType`` or ``ActionType``.
DECLARED: dict[str, MessageType | ActionType] = {}
#: The level each declared type is usually written at (for the docs table).
DEFAULT_LEVELS: dict[str, str] = {}


#: The modules that declare types (``load_declared`` imports them all).
DECLARING_MODULES = (
    "openclaw.pipeline", "openclaw.lanes", "openclaw.outbox", "openclaw.notify",
    "openclaw.agent.http", "openclaw.agent.http_check", "openclaw.http", "openclaw.agent.failover",
    "openclaw.agent.tools", "openclaw.agent.service",
    "openclaw.connectors.base", "openclaw.connectors.service", "openclaw.connectors.access", "openclaw.connectors.telegram",
    "openclaw.connectors.discord", "openclaw.connectors.slack", "openclaw.connectors.whatsapp",
    "openclaw.connectors.smtp",
    "openclaw.proactive.heartbeat", "openclaw.proactive.checks", "openclaw.proactive.cron",
    "openclaw.proactive.mail", "openclaw.proactive.importance", "openclaw.proactive.report",
    "openclaw.lifecycle_log", "openclaw.gateway.service", "openclaw.store.guard", "openclaw.web_limits",
    "openclaw.periodic", "openclaw.cluster.keeper", "openclaw.cluster.instance", "openclaw.shards", "openclaw.gateway.fanout",
    "openclaw.console.site",
)


_loaded = False


def load_declared() -> dict[str, MessageType | ActionType]:
    """Every declared type, by name: the declaring modules are imported first."""
    global _loaded
    if not _loaded:
        for module in DECLARING_MODULES:
            importlib.import_module(module)
        _loaded = True
    return DECLARED


def _register(name: str, declared: Any, level: str) -> None:
    if name in DECLARED:
        raise ValueError(f"Eliot type {name!r} declared twice")
    LEVELS[level]  # noqa: B018 -- a bad level fails at import, not at the first log
    DECLARED[name] = declared
    DEFAULT_LEVELS[name] = level


def typed(key: str, types: list[Any], description: str) -> Field:
    """A typed field (``None`` in ``types`` allows a null)."""
    return Field.for_types(key, types, description)


def message_type(name: str, fields: list[Field], description: str, level: str = "info") -> MessageType:
    """Declare a standalone message; ``log_level`` is added to its fields."""
    declared = MessageType(name, [*fields, LOG_LEVEL], description)
    _register(name, declared, level)
    return declared


def action_type(
    name: str, start: list[Field], success: list[Field], description: str, level: str = "info",
) -> ActionType:
    """Declare an action; ``log_level`` is added to its start and success fields."""
    declared = ActionType(name, [*start, LOG_LEVEL], [*success, LOG_LEVEL], description)
    _register(name, declared, level)
    return declared


def set_threshold(level: str) -> None:
    """Set the lowest level that is written anywhere (the ``--log-level``)."""
    global _threshold
    _threshold = LEVELS[level]


def enabled(level: str) -> bool:
    """Whether a message at ``level`` would be written."""
    return LEVELS[level] >= _threshold


def begin(action_type: ActionType | str, level: str = "info", **fields: Any) -> Action:
    """
    Start an Eliot action whose start and success messages carry ``level``.

    Use it as ``with begin(SOME_ACTION, key=v): ...`` or, for Deferreds,
    with ``action.context()`` and ``DeferredContext(d).addActionFinish()``.
    A failed action's end message is written at ``error``.
    """
    if isinstance(action_type, str):
        action = start_action(action_type=action_type, log_level=level, **fields)
    else:
        action = action_type(log_level=level, **fields)
    action.add_success_fields(log_level=level)
    return action


def begin_task(action_type: ActionType, level: str = "info", **fields: Any) -> Action:
    """Like ``begin``, but a new top-level task whatever action is current."""
    action = action_type.as_task(log_level=level, **fields)
    action.add_success_fields(log_level=level)
    return action


def continue_task(task_id: str, action_type: ActionType, level: str = "info", **fields: Any) -> Action:
    """Like ``begin``, as a child of the serialised task id ``task_id`` (``Action.serialize_task_id``)."""
    action = Action.continue_task(task_id=task_id, action_type=action_type.action_type,
                                  _serializers=action_type._serializers, log_level=level, **fields)
    action.add_success_fields(log_level=level)
    return action


def log(message_type: MessageType | str, level: str = "info", **fields: Any) -> None:
    """Log one Eliot message at ``level``, if that level is enabled."""
    if LEVELS[level] >= _threshold:
        if isinstance(message_type, str):
            log_message(message_type=message_type, log_level=level, **fields)
        else:
            message_type.log(log_level=level, **fields)


_TABLE_START = "<!-- declared-types:start (generated: python -m openclaw.eliotutil docs/logging.md) -->"
_TABLE_END = "<!-- declared-types:end -->"
_IMPLIED = {"log_level", "action_type", "action_status", "message_type"}


def _fields(serializer: Any) -> str:
    return ", ".join(f"`{k}`" for k in serializer.fields if k not in _IMPLIED)


def types_table() -> str:
    """The Markdown table of every declared type (docs/logging.md holds a copy, kept equal by a test)."""
    rows = ["| Type | Kind | Level | Fields | Meaning |", "| --- | --- | --- | --- | --- |"]
    for name, declared in sorted(load_declared().items()):
        if isinstance(declared, ActionType):
            kind = "action"
            fields = _fields(declared._serializers.start)
            success = _fields(declared._serializers.success)
            if success:
                fields += f"; on success {success}"
        else:
            kind, fields = "message", _fields(declared._serializer)
        rows.append(f"| `{name}` | {kind} | {DEFAULT_LEVELS[name]} | {fields} | {declared.description} |")
    return "\n".join(rows)


def with_types_table(markdown: str) -> str:
    """``markdown`` with the text between the table's markers replaced by ``types_table()``."""
    before, rest = markdown.split(_TABLE_START, 1)
    _, after = rest.split(_TABLE_END, 1)
    return f"{before}{_TABLE_START}\n{types_table()}\n{_TABLE_END}{after}"


if __name__ == "__main__":
    import sys

    # Run as a script this module is __main__: the declarations register in openclaw.eliotutil.
    from openclaw.eliotutil import with_types_table  # noqa: F811

    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(with_types_table(text))
