"""
Tests for openclaw.logs: the files, levels, redaction, the Twisted bridge,
the console events, rotation, and that eliot-tree can read what we write.
"""

from __future__ import annotations

import base64
import urllib.parse

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from eliot import log_message, start_action, write_traceback
from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher

from openclaw import eliotutil
from openclaw.eliotutil import LEVELS, begin, log
from openclaw.config import build_config
from openclaw.config.sections import sasl_forms
from openclaw.logs import (
    encoded_forms,
    CONSOLE_MARKER,
    REDACTED,
    LoggingService,
    is_secret_key,
    known_secrets,
    level_of,
    redact,
    render,
    serialize_redacted,
)
from openclaw.pipeline import MESSAGE, MESSAGE_BRAIN_FAILED
from tests.strategies import any_secrets, json_values, secret_strings, values_with_planted_secrets

TOKEN = "gw-token-0123456789abcdef"
API_KEY = "sk-live-ZYXWVUTSRQ987654"


@pytest.fixture(autouse=True)
def _restore_threshold() -> Iterator[None]:
    """The service sets the process-wide threshold; give other tests theirs back."""
    saved = eliotutil._threshold
    yield
    eliotutil._threshold = saved


def start(tmp_path: Path, level: str = "trace", **kwargs: Any) -> LoggingService:
    service = LoggingService(str(tmp_path), level, **kwargs)
    service.startService()
    return service


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def of_type(messages: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("message_type") == name or m.get("action_type") == name]


def fail_inside(action_type: str, level: str = "info") -> None:
    """Run an action that raises, so its end message is action_status=failed."""
    with pytest.raises(RuntimeError):
        with begin(action_type, level):
            raise RuntimeError("it broke")


def test_every_line_is_json_with_the_eliot_fields_and_a_level(tmp_path: Path, eliot_logger: Any) -> None:
    service = start(tmp_path, "trace")
    for level in LEVELS:
        log(f"test:each:{level}", level, n=1)
        with begin(f"test:action:{level}", level, n=2):
            log("test:inside", level)
    fail_inside("test:fails")
    log_message(message_type="test:no-level")
    log("test:unserialisable", "info", thing=object())
    eliot_logger.reset()  # the validating logger would fail the test for the line written on purpose here
    service.stopService()

    messages = lines(tmp_path / "logs" / "combined.log")
    assert len(of_type(messages, "test:inside")) == len(LEVELS)
    for message in messages:
        assert message["log_level"] in LEVELS
        assert isinstance(message["timestamp"], float)
        assert message["task_uuid"]
        assert "message_type" in message or "action_type" in message
    assert of_type(messages, "test:no-level")[0]["log_level"] == "info"
    assert of_type(messages, "test:unserialisable")[0]["thing"].startswith("<object object")
    failed = [m for m in of_type(messages, "test:fails") if m.get("action_status") == "failed"]
    assert failed[0]["log_level"] == "error"


def test_logs_directory_and_files_are_private(tmp_path: Path) -> None:
    service = start(tmp_path)
    service.stopService()
    logs = tmp_path / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    for name in ("combined.log", "error.log"):
        assert stat.S_IMODE((logs / name).stat().st_mode) == 0o600


@pytest.mark.parametrize("configured", list(LEVELS))
def test_level_filtering(tmp_path: Path, configured: str) -> None:
    service = start(tmp_path, configured)
    for level in LEVELS:
        log(f"test:msg:{level}", level)
        # begin() does not consult the threshold: the destination must filter.
        with begin(f"test:act:{level}", level):
            pass
    service.stopService()

    messages = lines(tmp_path / "logs" / "combined.log")
    wanted = {level for level in LEVELS if LEVELS[level] >= LEVELS[configured]}
    assert {m["message_type"].rsplit(":", 1)[1] for m in messages if m.get("message_type", "").startswith("test:msg:")} == wanted
    acts = [m for m in messages if m.get("action_type", "").startswith("test:act:")]
    assert {m["action_type"].rsplit(":", 1)[1] for m in acts} == wanted
    assert all(LEVELS[m["log_level"]] >= LEVELS[configured] for m in messages)


def test_error_log_holds_only_errors(tmp_path: Path, eliot_logger: Any) -> None:
    service = start(tmp_path, "trace")
    for level in LEVELS:
        log(f"test:msg:{level}", level)
    fail_inside("test:fails", "debug")
    try:
        1 / 0
    except ZeroDivisionError:
        write_traceback()
    service.stopService()
    assert len(eliot_logger.flush_tracebacks(ZeroDivisionError)) == 1

    errors = lines(tmp_path / "logs" / "error.log")
    assert errors and all(m["log_level"] == "error" for m in errors)
    types = {m.get("message_type") or m.get("action_type") for m in errors}
    assert {"test:msg:error", "test:fails", "eliot:traceback"} <= types
    assert "test:msg:warn" not in types
    assert [m["action_status"] for m in of_type(errors, "test:fails")] == ["failed"]


def test_secrets_never_reach_any_file(tmp_path: Path) -> None:
    service = start(tmp_path, "trace", secrets=lambda: [TOKEN, "short"])
    log("test:config", "info", api_key=API_KEY, max_tokens=4096, url=f"wss://host/?token={TOKEN}")
    log("test:nested", "debug", headers={"Authorization": [f"Bearer {TOKEN}"]}, note=f"key is {TOKEN}!")
    with begin("test:connect", "info", password="hunter2-hunter2"):
        pass
    with pytest.raises(RuntimeError):
        with start_action(action_type="test:auth"):
            raise RuntimeError(f"auth failed for {TOKEN}")
    Logger(namespace="test.secret").info("connecting with {t}", t=TOKEN)
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        Logger(namespace="test.secret").failure("login failed")
    service.stopService()

    files = list((tmp_path / "logs").iterdir())
    raw = b"".join(path.read_bytes() for path in files)
    assert TOKEN.encode() not in raw
    assert API_KEY.encode() not in raw
    assert b"hunter2-hunter2" not in raw
    messages = lines(tmp_path / "logs" / "combined.log")
    config = of_type(messages, "test:config")[0]
    assert config["api_key"] == REDACTED
    assert config["max_tokens"] == 4096
    assert config["url"] == f"wss://host/?token={REDACTED}"
    assert of_type(messages, "test:nested")[0]["headers"] == {"Authorization": [REDACTED]}
    failure = [m for m in of_type(messages, "twisted:log") if m.get("log_namespace") == "test.secret" and "traceback" in m]
    assert REDACTED in failure[0]["traceback"]


def test_twisted_events_are_bridged_with_levels_and_tracebacks(tmp_path: Path) -> None:
    service = start(tmp_path, "debug")
    logger = Logger(namespace="test.bridge")
    logger.info("Site starting on {port}", port=8080)
    logger.warn("slow {what}", what="disk")
    logger.debug("chatty")
    logger.error("plain error")
    try:
        {}["missing"]
    except KeyError:
        logger.failure("lookup went wrong")
    service.stopService()

    bridged = [m for m in of_type(lines(tmp_path / "logs" / "combined.log"), "twisted:log") if m["log_namespace"] == "test.bridge"]
    assert [(m["log_level"], m["message"]) for m in bridged] == [
        ("info", "Site starting on 8080"),
        ("warn", "slow disk"),
        ("debug", "chatty"),
        ("error", "plain error"),
        ("error", "lookup went wrong"),
    ]
    assert "traceback" not in bridged[0]
    assert bridged[-1]["exception"] == "builtins.KeyError"
    assert "Traceback" in bridged[-1]["traceback"] and "KeyError" in bridged[-1]["traceback"]
    errors = of_type(lines(tmp_path / "logs" / "error.log"), "twisted:log")
    assert [m["message"] for m in errors if m["log_namespace"] == "test.bridge"] == ["plain error", "lookup went wrong"]


def test_bridge_respects_the_threshold(tmp_path: Path) -> None:
    service = start(tmp_path, "warn")
    Logger(namespace="test.quiet").info("not wanted")
    Logger(namespace="test.quiet").warn("wanted")
    service.stopService()
    bridged = [m["message"] for m in of_type(lines(tmp_path / "logs" / "combined.log"), "twisted:log")]
    assert bridged == ["wanted"]


@pytest.fixture
def captured() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_console_events_are_published_and_not_bridged_back(tmp_path: Path, captured: list[dict[str, Any]]) -> None:
    service = start(tmp_path, "info", secrets=lambda: [TOKEN])
    with begin("test:gateway:listen", "info", endpoint="tcp:18789"):
        pass
    log("test:console", "warn", note=f"has {TOKEN}")
    log("test:hidden", "debug")
    Logger(namespace="test.console").info("from twisted")
    service.stopService()

    console = [e for e in captured if e.get(CONSOLE_MARKER)]
    texts = [formatEvent(e) for e in console]
    assert "info  test:gateway:listen started endpoint=tcp:18789" in texts
    assert "info  test:gateway:listen succeeded" in texts
    assert f"warn  test:console note=\"has {REDACTED}\"" in texts
    assert [e["log_level"] for e in console if "test:console" in formatEvent(e)] == [LogLevel.warn]
    assert not any("test:hidden" in t or "from twisted" in t for t in texts)
    # Console events are not turned back into Eliot messages.
    bridged = of_type(lines(tmp_path / "logs" / "combined.log"), "twisted:log")
    assert [m["message"] for m in bridged] == ["from twisted"]


def test_console_can_be_turned_off(tmp_path: Path, captured: list[dict[str, Any]]) -> None:
    service = start(tmp_path, "info", console=False)
    log("test:quiet", "error")
    service.stopService()
    assert not [e for e in captured if e.get(CONSOLE_MARKER)]
    assert of_type(lines(tmp_path / "logs" / "combined.log"), "test:quiet")


def test_rotation_keeps_at_most_backups_old_files(tmp_path: Path) -> None:
    service = start(tmp_path, "info", max_bytes=2000, backups=3)
    for n in range(400):
        log("test:rotate", "error", n=n)
    service.stopService()

    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir() if p.name.startswith("combined.log")) == [
        "combined.log",
        "combined.log.1",
        "combined.log.2",
        "combined.log.3",
    ]
    assert sorted(p.name for p in logs.iterdir() if p.name.startswith("error.log")) == [
        "error.log",
        "error.log.1",
        "error.log.2",
        "error.log.3",
    ]
    numbers = [[m["n"] for m in of_type(lines(logs / name), "test:rotate")] for name in ("combined.log.3", "combined.log.2", "combined.log.1", "combined.log")]
    assert numbers[-1][-1] == 399
    flat = [n for chunk in numbers for n in chunk]
    assert flat == sorted(flat) and flat == list(range(flat[0], 400))
    assert all(p.stat().st_size < 2000 + 500 for p in logs.iterdir())


def test_buffered_info_records_rotate_like_single_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet.task import Clock

    from openclaw import logs

    monkeypatch.setattr(logs, "isInIOThread", lambda: True)  # the reactor thread: records are buffered
    clock = Clock()
    service = start(tmp_path, "info", max_bytes=2000, backups=3, clock=clock)
    for n in range(400):
        log("test:rotate", "info", n=n)
        if n % 37 == 0:
            clock.advance(logs.FLUSH_INTERVAL)  # a flush now and then, mid-file
    service.stopService()

    logs_dir = tmp_path / "logs"
    names = ("combined.log.3", "combined.log.2", "combined.log.1", "combined.log")
    assert sorted(p.name for p in logs_dir.iterdir() if p.name.startswith("combined.log")) == sorted(names)
    numbers = [n for name in names for n in (m["n"] for m in of_type(lines(logs_dir / name), "test:rotate"))]
    assert numbers == list(range(numbers[0], 400))
    assert all((logs_dir / name).stat().st_size < 2000 + 500 for name in names)


def test_restart_in_one_process_leaks_nothing(tmp_path: Path) -> None:
    service = LoggingService(str(tmp_path), "info")
    for n in range(2):
        service.startService()
        log("test:round", "info", round=n)
        Logger(namespace="test.round").info("twisted {round}", round=n)
        service.stopService()
        assert not service.running
    log("test:after-stop", "error")
    Logger(namespace="test.round").error("after stop")

    second = LoggingService(str(tmp_path / "other"), "info")
    second.startService()
    log("test:other", "info")
    Logger(namespace="test.round").info("other")
    second.stopService()

    messages = lines(tmp_path / "logs" / "combined.log")
    assert [m["round"] for m in of_type(messages, "test:round")] == [0, 1]
    assert [m["message"] for m in of_type(messages, "twisted:log")] == ["twisted 0", "twisted 1"]
    assert not of_type(messages, "test:after-stop")
    others = lines(tmp_path / "other" / "logs" / "combined.log")
    # A leaked destination writing to a closed file would show up here.
    assert {m.get("message_type") or m.get("action_type") for m in others} == {"test:other", "twisted:log"}
    assert len(of_type(others, "twisted:log")) == 1


def test_eliot_tree_renders_the_file(tmp_path: Path) -> None:
    service = start(tmp_path, "info")
    with begin("test:tree:outer", "info", job="x"):
        log("test:tree:inner", "info", step=1)
        with begin("test:tree:nested", "info"):
            pass
    # Start and success are debug (filtered), the failure is error: an orphan.
    fail_inside("test:tree:orphan", "debug")
    Logger(namespace="test.tree").info("twisted says hi")
    service.stopService()

    eliot_tree = Path(sys.executable).parent / "eliot-tree"
    result = subprocess.run(
        [str(eliot_tree), "--color", "never", str(tmp_path / "logs" / "combined.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in ("test:tree:outer", "test:tree:inner", "test:tree:nested", "test:tree:orphan", "twisted:log"):
        assert name in result.stdout


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log.level"):
        LoggingService(str(tmp_path), "verbose")
    with pytest.raises(ValueError, match="log.backups"):
        LoggingService(str(tmp_path), "info", backups=0)
    with pytest.raises(ValueError, match="log.max_bytes"):
        LoggingService(str(tmp_path), "info", max_bytes=0)


# --- pure functions -------------------------------------------------------


def test_level_of() -> None:
    assert level_of({"message_type": "x", "log_level": "debug"}) == "debug"
    assert level_of({"action_type": "x", "action_status": "failed"}) == "error"
    assert level_of({"message_type": "eliot:traceback"}) == "error"
    assert level_of({"message_type": "x"}) == "info"
    assert level_of({"message_type": "x", "log_level": "loud"}) == "info"


def test_render() -> None:
    line = render(
        {"action_type": "a:b", "action_status": "started", "task_uuid": "u", "port": 1, "text": "two words"},
        "warn",
    )
    assert line == 'warn  a:b started port=1 text="two words"'
    assert render({"message_type": "m", "blob": "x" * 1000}, "info").endswith("…")
    assert not render({"message_type": "m", "tb": "x" * 1000}, "error").endswith("…")


def test_secret_keys() -> None:
    for name in ("token", "GatewayToken", "client_secret", "PASSWORD", "db_passwd", "x-api_key", "apiKey", "Authorization", "Set-Cookie", "private_key_pem", "credentials"):
        assert is_secret_key(name), name
    for name in ("message", "user", "endpoint", "session_id"):
        assert not is_secret_key(name), name
    assert redact({"max_tokens": 4096, "tokens_used": 12, "token": "abc", "flag": True}, []) == {
        "max_tokens": 4096,
        "tokens_used": 12,
        "token": REDACTED,
        "flag": True,
    }
    assert redact({"credentials": {"user": "me", "n": 1}}, []) == {"credentials": {"user": REDACTED, "n": 1}}


def test_redact_examples() -> None:
    assert redact("ab12345678cd", ["12345678"]) == f"ab{REDACTED}cd"
    assert redact("short secret", ["short"]) == "short secret"
    # Overlapping secrets become one marker and neither survives.
    assert redact("xxabcdefghijyy", ["abcdefgh", "defghij0", "cdefghij"]) == f"xx{REDACTED}yy"
    assert redact({"12345678": (b"12345678", {1, 2})}, ["12345678"]) == {REDACTED: [REDACTED, [1, 2]]}


def test_every_encoded_form_of_a_secret_is_redacted() -> None:
    user, password = "me@example.org", "p4ss wörd/+\"x"
    secrets = [password, *sasl_forms(user, password)]
    raw = password.encode()
    forms = [
        password,
        base64.b64encode(raw).decode(),
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),  # AUTH PLAIN
        base64.b64encode(f"{user}\0{password}".encode()).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote_plus(password),
        json.dumps(password)[1:-1],
        json.dumps(password, ensure_ascii=False)[1:-1],
    ]
    for form in forms:
        text = f"535 5.7.8 failed: {form} end"
        assert redact(text, secrets) == f"535 5.7.8 failed: {REDACTED} end", form
        clean, line = serialize_redacted({"message_type": "t", "error": text}, known_secrets(secrets))
        assert form.encode() not in line and orjson.dumps(form)[1:-1] not in line, form
        assert clean["error"] == f"535 5.7.8 failed: {REDACTED} end"


def test_encoded_forms_are_computed_once_per_secret_set() -> None:
    assert known_secrets(["first-secret-1"]) is known_secrets(["first-secret-1"])
    assert base64.b64encode(b"first-secret-1").decode().rstrip("=") in known_secrets(["first-secret-1"])
    assert known_secrets(["short"]) == ()


def test_the_log_files_hold_no_sasl_form_of_the_smtp_password(tmp_path: Path) -> None:
    config = build_config({"connectors": {"smtp": {"user": "mailer", "password": "mail-pass-123"}}}, {}, {}, "t")
    service = start(tmp_path, secrets=lambda: config.secrets({}))
    plain = base64.b64encode(b"\0mailer\0mail-pass-123").decode()
    log("openclaw:smtp:send-failed", "warn", error=f"SMTP 535: AUTH PLAIN {plain} / {base64.b64encode(b'mail-pass-123').decode()}")
    service.stopService()
    written = (tmp_path / "logs" / "combined.log").read_text()
    assert "SMTP 535: AUTH PLAIN <redacted> / <redacted>" in written
    assert plain not in written and "bWFpbC1wYXNzLTEyMw" not in written




@given(any_secrets(), st.text(max_size=8), st.text(max_size=8))
def test_no_encoded_form_survives_in_text_or_in_the_line(secret: str, before: str, after: str) -> None:
    for form in encoded_forms(secret):
        text = before + form + after
        assert form not in redact(text, [secret])
        _, line = serialize_redacted({"message_type": "t", "text": text}, known_secrets([secret]))
        assert orjson.dumps(form)[1:-1] not in line


# --- hypothesis ---------------------------------------------------------------

def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def shape(value: Any) -> Any:
    """The value with every string blanked: what redaction must not change."""
    if isinstance(value, str):
        return "<str>"
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value


@given(values_with_planted_secrets())
def test_no_secret_survives_redaction(case: tuple[Any, list[str]]) -> None:
    value, secrets = case
    cleaned = redact(value, secrets)
    for text in strings_in(cleaned):
        for secret in secrets:
            assert secret not in text
    dumped = json.dumps(cleaned, ensure_ascii=False)
    for secret in secrets:
        assert secret not in dumped


@given(values_with_planted_secrets(secret_keys=False))
def test_redaction_keeps_the_shape(case: tuple[Any, list[str]]) -> None:
    # Plain keys are never rewritten, so only string leaves may change.
    value, secrets = case
    assert shape(redact(value, secrets)) == shape(value)


@given(json_values(st.text(max_size=10), strings=st.text(max_size=10), floats=True),
       st.lists(secret_strings(), max_size=3))
def test_redaction_without_matches_is_the_identity(value: Any, secrets: list[str]) -> None:
    assume(not any(secret in text for secret in secrets for text in strings_in(value)))
    assume(not any(is_secret_key(text) for text in strings_in(value)))
    assert redact(value, secrets) == value


@given(values_with_planted_secrets()
       | json_values(st.text(max_size=10), strings=st.text(max_size=10), floats=True).map(lambda v: (v, ["k" * 8])))
def test_the_written_line_never_holds_a_secret_and_matches_redact(case: tuple[Any, list[str]]) -> None:
    value, secrets = case
    message = {"message_type": "test:x", "value": value}
    known = known_secrets(secrets)
    clean, line = serialize_redacted(message, known)
    assert clean == redact(message, secrets)
    assert line.endswith(b"\n") and json.loads(line)["message_type"] == "test:x"
    for secret in known:
        assert secret.encode() not in line and orjson.dumps(secret)[1:-1] not in line


def test_per_message_actions_reach_the_file_but_not_the_console(tmp_path: Path, captured: list[dict[str, Any]]) -> None:
    service = start(tmp_path, "info")
    with begin(MESSAGE, "info", event_id="e1", session_id="webchat:1", source="webchat", type="message.received",
               length=2):
        log(MESSAGE_BRAIN_FAILED, "error", error="model down", retryable=True)
    service.stopService()
    texts = [formatEvent(e) for e in captured if e.get(CONSOLE_MARKER)]
    assert [t.split()[1] for t in texts] == ["openclaw:message:brain-failed"]
    written = [m for m in lines(tmp_path / "logs" / "combined.log") if m.get("action_type") == "openclaw:message"]
    assert [m["action_status"] for m in written] == ["started", "succeeded"]


def test_twisted_factory_chatter_is_debug() -> None:
    from twisted.logger import LogLevel

    from openclaw.logs import twisted_level

    assert twisted_level({"log_format": "Starting factory {factory!r}", "log_level": LogLevel.info}) == "debug"
    assert twisted_level({"log_format": "Stopping factory {factory!r}", "log_level": LogLevel.info}) == "debug"
    assert twisted_level({"log_format": "Site starting on {port}", "log_level": LogLevel.info}) == "info"
    assert twisted_level({"log_format": "x", "log_level": LogLevel.critical}) == "error"
