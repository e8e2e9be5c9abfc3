"""Config: defaults, YAML, environment, overrides, and one-line errors."""

import os

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from openclaw import config
from openclaw.config import parsing
from openclaw.config import ConfigError, build_config, parse_duration, parse_size
from tests.strategies import config_documents, duration_parts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def error(document=None, environ={}, overrides={}) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(document, environ, overrides)
    return str(info.value)


def test_no_file_gives_safe_defaults() -> None:
    c = build_config()
    assert c.gateway.listen == "tcp:18789:interface=127.0.0.1"
    assert c.web.listen == "tcp:8080:interface=127.0.0.1"
    assert c.daemon.drain_timeout == 30.0
    assert c.gateway.max_frame_bytes == 1024 * 1024
    assert c.log.level == "info"
    assert c.heartbeat.every == 1800.0


def test_layers_yaml_then_env_then_overrides() -> None:
    document = {"daemon": {"drain_timeout": "1m"}, "gateway": {"max_bad_frames": 3}, "log": {"level": "debug"}}
    environ = {"OPENCLAW_DAEMON_DRAIN_TIMEOUT": "45s", "LOG_LEVEL": "warn"}
    c = build_config(document, environ, {"log.level": "trace", "web.listen": None})
    assert c.daemon.drain_timeout == 45.0
    assert c.gateway.max_bad_frames == 3
    assert c.log.level == "trace"
    assert c.web.listen == "tcp:8080:interface=127.0.0.1"


def test_openclaw_log_level_wins_over_log_level() -> None:
    assert build_config(None, {"LOG_LEVEL": "warn", "OPENCLAW_LOG_LEVEL": "error"}).log.level == "error"


def test_bad_duration_names_key_value_and_reason() -> None:
    assert error({"daemon": {"drain_timeout": "soon"}}) == (
        'config error: daemon.drain_timeout: expected a duration from 0s to 1h, got "soon"'
    )


def test_a_moved_key_says_where_it_went() -> None:
    assert error({"gateway": {"drain_timeout": "5s"}}) == "config error: gateway.drain_timeout: moved to daemon.drain_timeout"
    assert error(None, {"OPENCLAW_GATEWAY_DRAIN_TIMEOUT": "5s"}) == (
        "config error: OPENCLAW_GATEWAY_DRAIN_TIMEOUT: moved to OPENCLAW_DAEMON_DRAIN_TIMEOUT")


@pytest.mark.parametrize(
    "document, key",
    [
        ({"gateway": {"max_bad_frames": "many"}}, "gateway.max_bad_frames"),
        ({"gateway": {"max_bad_frames": True}}, "gateway.max_bad_frames"),
        ({"gateway": {"max_frame_bytes": "huge"}}, "gateway.max_frame_bytes"),
        ({"gateway": {"token": 12345}}, "gateway.token"),
        ({"log": {"level": "verbose"}}, "log.level"),
        ({"log": {"backups": 0}}, "log.backups"),
        ({"heartbeat": {"every": -5}}, "heartbeat.every"),
        ({"gateway": "tcp:1"}, "gateway"),
    ],
)
def test_bad_types_are_refused(document, key) -> None:
    assert error(document).startswith(f"config error: {key}: ")


def test_unknown_keys_and_sections_are_refused() -> None:
    assert "config error: gateway.listn: unknown key (known: listen," in error({"gateway": {"listn": "tcp:1"}})
    assert error({"gatway": {}}).startswith("config error: gatway: unknown section")
    assert error(["a"]).startswith("config error: <config>: expected a mapping")


def test_unknown_environment_variables_are_refused() -> None:
    message = error(None, {"OPENCLAW_GATEWAY_TIMEOUT": "5"})
    assert message.startswith("config error: OPENCLAW_GATEWAY_TIMEOUT: unknown environment variable")
    build_config(None, {"OPENCLAW_HOME": "/tmp/x", "OPENCLAW_CONFIG": "/tmp/y.yaml"})


def test_environment_errors_name_the_variable() -> None:
    assert error(None, {"OPENCLAW_DAEMON_DRAIN_TIMEOUT": "later"}).startswith(
        "config error: OPENCLAW_DAEMON_DRAIN_TIMEOUT (daemon.drain_timeout): expected a duration"
    )


@pytest.mark.parametrize("endpoint", ["tcp:notaport", "bogus:1234", "tcp:", "", "tcp:80:interface=127.0.0.1:bad=1:x"])
def test_bad_endpoints_are_refused(endpoint) -> None:
    assert error(None, {}, {"gateway.listen": endpoint}).startswith("config error: gateway.listen: expected an endpoint")


def test_unix_and_ephemeral_endpoints_are_accepted(tmp_path) -> None:
    c = build_config({"web": {"listen": "tcp:0"}, "gateway": {"listen": f"unix:{tmp_path}/gw.sock"}})
    assert c.gateway.listen.startswith("unix:")


def test_invalid_yaml_file_names_the_line(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("gateway:\n  listen: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        config.load_config(str(path), {})
    assert str(info.value).startswith(f"config error: {path}: invalid YAML at line")


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load_config(str(tmp_path / "missing.yaml"), {})


def test_example_config_is_the_rendered_key_table() -> None:
    with open(os.path.join(ROOT, "etc", "openclaw.example.yaml")) as f:
        text = f.read()
    assert text == config.render_example()
    uncommented = "\n".join(line.replace("# ", "", 1) if line.startswith("  # ") and ": " in line and "[" not in line else line for line in text.splitlines())
    assert build_config(yaml.safe_load(uncommented)) == build_config()


def test_digest_changes_with_config_but_hides_secrets() -> None:
    a = build_config({"gateway": {"token": "s3cret-token-value"}})
    b = build_config({"gateway": {"token": "another-token-value"}})
    assert a.digest() == b.digest() != build_config().digest()
    assert a.secrets() == ["s3cret-token-value"]


@given(duration_parts())
def test_durations_parse_to_the_sum_of_their_parts(parts) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    expected = sum(n * parsing.DURATION_UNITS[u] for n, u in parts)
    if expected == 0 or parsing.MIN_DURATION <= expected <= parsing.MAX_DURATION:
        assert parse_duration(text) == pytest.approx(expected)
    else:
        with pytest.raises(ValueError, match="at most 10 years"):
            parse_duration(text)


@given(st.integers(0, 2**40), st.sampled_from(["", "B", "KB", "KiB", "MB", "MiB", "GB", "GiB"]))
def test_sizes_parse(number, unit) -> None:
    expected = number * parsing._SIZE_UNITS[unit or None]
    if expected <= parsing.MAX_SIZE:
        assert parse_size(f"{number}{unit}") == expected
    else:
        with pytest.raises(ValueError, match="at most 1TiB"):
            parse_size(f"{number}{unit}")


@given(config_documents())
def test_any_document_loads_or_fails_with_one_line_per_config_error(document) -> None:
    try:
        c = build_config(document)
    except ConfigError as e:
        lines = str(e).split("\n")
        assert all(line.startswith("config error: ") for line in lines)
        assert len(lines) == len(getattr(e, "errors", [e]))
        assert all(len(line) < 400 for line in lines)
    else:
        assert c.gateway.max_bad_frames > 0 and c.daemon.drain_timeout >= 0


def test_every_error_is_reported_at_once_from_every_layer() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"gateway": {"max_frame_bytes": 0, "nope": 1}, "heartbeat": {"every": 1e-7}},
                     {"OPENCLAW_STORE_HISTORY": str(10**25)}, {"web.listen": "tcp:99999"})
    assert str(info.value).split("\n") == [
        "config error: gateway.nope: unknown key (known: listen, token, max_frame_bytes, max_bad_frames, max_connections, max_connections_per_address, max_requests_per_second, request_burst, send_high_water, send_hard_limit, allowed_origins, backlog)",
        "config error: gateway.max_frame_bytes: expected a size from 256B to 64MiB, got 0",
        "config error: heartbeat.every: expected a duration from 1s to 7d, or 0 (off), got 1e-07",
        "config error: OPENCLAW_STORE_HISTORY (store.history): expected a whole number from 1 to 100,000, got "
        '"10000000000000000000000000"',
        'config error: web.listen: the port must be from 1 to 65535 (or 0: any free port), got 99999 in "tcp:99999"',
    ]


@pytest.mark.parametrize("value", [10**400, "1" * 400, 1e-7, float("inf"), float("nan"), -1, True, "3651d"])
def test_durations_out_of_any_range_are_refused(value) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


# Connectors, checks, cron, mail


def test_connectors_parse_per_platform_and_name_a_bad_key() -> None:
    config = build_config({"connectors": {"telegram": {"enabled": True, "allow_from": [42, "7"], "stall_timeout": "2m"}}})
    assert [name for name, _ in config.connectors.enabled()] == ["telegram"]
    assert config.connectors.telegram.allow_from == ("42", "7") and config.connectors.telegram.stall_timeout == 120
    with pytest.raises(ConfigError) as e:
        build_config({"connectors": {"discord": {"tokn": "x"}}})
    assert str(e.value).startswith("config error: connectors.discord: unknown key 'tokn'")
    with pytest.raises(ConfigError) as e:
        build_config({"connectors": {"telegram": {"enabled": True, "mode": "webhook"}}})
    assert "webhook_secret" in str(e.value)


def test_connector_credentials_are_secrets_and_stay_out_of_the_digest() -> None:
    document = {"connectors": {"slack": {"bot_token": "xoxb-in-the-file-123"}},
                "mail": [{"name": "w", "host": "imap.example.org", "user": "me", "password_env": "W_PW"}]}
    env = {"SLACK_APP_TOKEN": "xapp-from-the-env-456", "W_PW": "mail-password-789"}
    config = build_config(document)
    assert {"xoxb-in-the-file-123", "xapp-from-the-env-456", "mail-password-789"} <= set(config.secrets(env))
    changed = build_config({**document, "connectors": {"slack": {"bot_token": "xoxb-another-one-000"}}})
    assert config.digest() == changed.digest()  # only "is a token set" counts


def test_list_sections_name_the_entry_and_field() -> None:
    cases = {
        "checks": ([{"name": "db", "type": "tcp", "target": "nohost"}], "checks: [0].target: expected host:port"),
        "cron": ([{"name": "r", "schedule": "0 9 * *", "action": "report"}], "cron: [0].schedule:"),
        "mail": ([{"name": "w", "host": "h", "user": "u"}], "mail: [0].password_env:"),
    }
    for section, (entries, message) in cases.items():
        with pytest.raises(ConfigError) as e:
            build_config({section: entries})
        assert str(e.value).startswith(f"config error: {message}"), str(e.value)
    with pytest.raises(ConfigError) as e:
        build_config({"checks": [{"name": "a", "type": "disk", "target": "/"}, {"name": "a", "type": "memory"}]})
    assert "'a' is used twice" in str(e.value)


def test_list_sections_from_the_environment_are_json() -> None:
    config = build_config(environ={"OPENCLAW_CRON": '[{"name": "w", "schedule": "0 9 * * 1", "action": "heartbeat"}]'})
    assert [job.name for job in config.cron] == ["w"]
    assert [job.name for job in build_config().cron] == ["morning-report"]  # the default job
    with pytest.raises(ConfigError) as e:
        build_config(environ={"OPENCLAW_CHECKS": "[{"})
    assert str(e.value).startswith("config error: OPENCLAW_CHECKS (checks): expected a JSON list")


@given(st.lists(st.sampled_from(["http", "tcp", "disk", "memory", "load", "process"]), max_size=6, unique=True))
def test_any_valid_checks_list_round_trips_its_names(types: list[str]) -> None:
    targets = {"http": "https://example.org/", "tcp": "127.0.0.1:5432", "disk": "/", "process": "sshd"}
    entries = [{"name": f"c-{t}", "type": t, **({"target": targets[t]} if t in targets else {})} for t in types]
    config = build_config({"checks": entries})
    assert [(c.name, c.type) for c in config.checks] == [(e["name"], e["type"]) for e in entries]


def test_every_numeric_key_has_a_range_and_the_docs_list_them() -> None:
    from openclaw.config.example import RANGES_BEGIN, RANGES_END, render_ranges
    from openclaw.config.parsing import count, parse_duration, parse_size, positive

    unranged = [key for key, (parser, _) in config.KEYS.items() if parser in (count, positive, parse_duration, parse_size)]
    assert unranged == []
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "configuration.md"), encoding="utf-8") as f:
        text = f.read()
    assert text[text.index(RANGES_BEGIN):text.index(RANGES_END) + len(RANGES_END)] == render_ranges()
