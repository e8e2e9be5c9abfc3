"""
The declared Eliot types: where a plain string name is still allowed, that
docs/logging.md lists exactly the declarations, and that the tests'
validating logger catches what it is there to catch.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from eliot import ValidationError, log_message, write_traceback

from openclaw import eliotutil
from openclaw.eliotutil import DECLARING_MODULES, begin, load_declared, log, message_type, typed, with_types_table
from openclaw.pipeline import MESSAGE, MESSAGE_RECORDED
from tests.conftest import ValidatingLogger

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "openclaw"

#: Modules whose types are not declared yet: only they may log by a string
#: name.  Remove a module from here when its types are declared.
UNDECLARED = {
    "openclaw/daemon.py", "openclaw/ordered.py",  # their types are in lifecycle_log.py (see there)
    "openclaw/gateway/service.py", "openclaw/gateway/token.py", "openclaw/listening.py", "openclaw/logs.py",
    "openclaw/state.py", "openclaw/store/pruning.py", "openclaw/store/redis.py", "openclaw/store/sqlite.py",
    "openclaw/system/rlimits.py", "openclaw/system/sdnotify.py", "openclaw/system/systemd_service.py",
    "openclaw/web.py",
}
EMITTERS = {"log", "begin", "begin_task", "continue_task"}


def calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text("utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]


def string_named(path: Path) -> list[str]:
    """The ``log(...)`` / ``begin(...)`` calls in ``path`` whose type is a string, not a declared type."""
    found = []
    for call in calls(path):
        if call.func.id in EMITTERS and call.args and isinstance(call.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
            found.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "eliotutil.py")


def test_only_modules_not_yet_declared_log_by_a_string_name() -> None:
    offending = [hit for p in modules() if str(p.relative_to(ROOT)) not in UNDECLARED for hit in string_named(p)]
    assert offending == [], "declare these types (openclaw.eliotutil.message_type / action_type)"
    still = {str(p.relative_to(ROOT)) for p in modules() if string_named(p)}
    assert still == UNDECLARED, "a module in UNDECLARED has no string names left: remove it from the list"


def test_every_module_that_declares_types_is_listed_for_the_docs() -> None:
    declaring = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts) for p in modules()
        if any(c.func.id in ("message_type", "action_type") for c in calls(p))
    }
    assert declaring == set(DECLARING_MODULES)


def test_the_docs_list_every_declared_type_with_its_fields() -> None:
    doc = (ROOT / "docs" / "logging.md").read_text("utf-8")
    assert doc == with_types_table(doc), "run: .venv/bin/python -m openclaw.eliotutil docs/logging.md"
    for name in load_declared():
        assert f"| `{name}` |" in doc


def test_every_declared_type_has_a_namespaced_name_and_a_description() -> None:
    for name, declared in load_declared().items():
        assert name.startswith("openclaw:") and declared.description, name


def test_a_type_is_declared_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        message_type("openclaw:message:recorded", [], "again")


def written(logger: ValidatingLogger, emit: Any, validate: bool = True) -> None:
    """Emit into ``logger`` alone (as the default logger), then validate it as the fixture does."""
    from eliot.testing import swap_logger

    previous = swap_logger(logger)
    try:
        emit()
    finally:
        swap_logger(previous)
    if validate:
        logger.memory.validate()


class Discard:
    def write(self, dictionary: dict, serializer: Any = None) -> None:
        pass


def test_the_validating_logger_passes_declared_types_written_right() -> None:
    logger = ValidatingLogger(Discard())

    def emit() -> None:
        with begin(MESSAGE, event_id="e", session_id="s:1", source="s", type="message.received", length=1):
            log(MESSAGE_RECORDED, "info", event_id="e", duplicate=False)

    written(logger, emit)
    assert [m.get("action_status") for m in logger.messages] == ["started", None, "succeeded"]


@pytest.mark.parametrize("emit, problem", [
    (lambda: log(MESSAGE_RECORDED, "info", event_id="e"), "Field 'duplicate' is missing"),
    (lambda: log(MESSAGE_RECORDED, "info", event_id=1, duplicate=False), "Field 'event_id' requires type"),
    (lambda: log(MESSAGE_RECORDED, "info", event_id="e", duplicate=False, extra=1), "Unexpected field 'extra'"),
    (lambda: MESSAGE_RECORDED.log(log_level="loud", event_id="e", duplicate=False), "unknown log level"),
    # The same type logged by its name as a plain string is checked all the same.
    (lambda: log("openclaw:message:recorded", "info", event_id="e"), "Field 'duplicate' is missing"),
    (lambda: begin("openclaw:message", event_id="e").finish(), "Field 'session_id' is missing"),
])
def test_the_validating_logger_fails_a_declared_type_written_wrong(emit: Any, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        written(ValidatingLogger(Discard()), emit)


def test_the_validating_logger_fails_a_field_that_is_not_json() -> None:
    with pytest.raises(TypeError, match="doesn't encode to JSON"):
        written(ValidatingLogger(Discard()), lambda: log("test:undeclared", "info", value=object()))


def test_the_validating_logger_forwards_every_message() -> None:
    seen: list[dict] = []

    class Forward:
        def write(self, dictionary: dict, serializer: Any = None) -> None:
            seen.append(dictionary)

    logger = ValidatingLogger(Forward())
    written(logger, lambda: log_message(message_type="test:x", n=1))
    assert [m["n"] for m in seen] == [1] and [m["n"] for m in logger.messages] == [1]


def test_a_logged_traceback_is_kept_for_the_fixture_unless_flushed() -> None:
    logger = ValidatingLogger(Discard())

    def emit() -> None:
        try:
            raise KeyError("boom")
        except KeyError:
            write_traceback()

    written(logger, emit, validate=False)
    assert len(logger.tracebackMessages) == 1
    assert len(logger.flush_tracebacks(KeyError)) == 1 and logger.tracebackMessages == []


def test_the_level_below_the_threshold_writes_nothing(eliot_logger: Any) -> None:
    before = len(eliot_logger.messages)
    log(MESSAGE_RECORDED, "trace", event_id="e", duplicate=False)
    assert eliotutil.enabled("trace") is False and len(eliot_logger.messages) == before


def test_a_typed_field_allows_only_its_types() -> None:
    field = typed("n", [int, None], "a count")
    field.validate(1)
    field.validate(None)
    with pytest.raises(ValidationError):
        field.validate("1")
