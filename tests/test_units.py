"""
Rendering, verifying and installing the systemd unit and launchd agent.
"""

import argparse
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw.system import install
from openclaw.system.install import (
    UsageError,
    add_service_parser,
    choose_manager,
    run_service,
    unit_path,
)
from openclaw.system.units import (
    LAUNCHD_TEMPLATE,
    SYSTEMD_TEMPLATE,
    read_template,
    render_launchd,
    render_systemd,
    systemd_quote,
    twistd_path,
)
from tests.strategies import unit_strings

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# Skipped locally without it; under CI (.ci/run installs systemd) its absence fails in verify().
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None and not os.environ.get("CI"), reason="systemd-analyze is not installed"
)


def settings(unit: str) -> dict[tuple[str, str], list[str]]:
    """``(section, key) -> [values]`` of a unit file, comments skipped."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in unit.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault((section, key), []).append(value)
    return found


def systemd_unquote(word: str, exec_line: bool) -> str:
    """A reference reading of one quoted word: shell-like quotes, then specifiers."""
    [value] = shlex.split(word)
    value = value.replace("%%", "%")
    return value.replace("$$", "$") if exec_line else value


def test_etc_launchd_copy_matches_packaged_template() -> None:
    assert (ROOT / "etc" / LAUNCHD_TEMPLATE).read_text("utf-8") == read_template(LAUNCHD_TEMPLATE)


# etc/openclaw.service is this render; regenerate it after a template change with
#   python -c 'from tests.test_units import example_unit; print(example_unit(), end="")' > etc/openclaw.service
EXAMPLE_PYTHON = "/opt/openclaw/bin/python"


def example_unit(python: str = EXAMPLE_PYTHON) -> str:
    """The system unit docs/deployment.md shows: a venv in /opt/openclaw, home /var/lib/openclaw."""
    return render_systemd(python, "/var/lib/openclaw", "openclaw", "openclaw", True)


def test_etc_unit_is_a_fresh_render() -> None:
    assert (ROOT / "etc" / SYSTEMD_TEMPLATE).read_text("utf-8") == example_unit()


def test_system_unit_settings() -> None:
    unit = settings(render_systemd("/opt/oc/bin/python", "/var/lib/openclaw", "openclaw", "openclaw", True))
    expected = {
        ("Unit", "StartLimitBurst"): ["5"],
        ("Unit", "StartLimitIntervalSec"): ["300"],
        ("Service", "Type"): ["notify"],
        ("Service", "NotifyAccess"): ["main"],
        ("Service", "ExecStart"): [f"{twistd_path('/opt/oc/bin/python')} -n --pidfile= openclaw --home /var/lib/openclaw"],
        ("Service", "Environment"): ["OPENCLAW_HOME=/var/lib/openclaw"],
        ("Service", "User"): ["openclaw"],
        ("Service", "Group"): ["openclaw"],
        ("Service", "Restart"): ["always"],
        ("Service", "RestartSec"): ["10"],
        ("Service", "RestartPreventExitStatus"): ["73 78"],
        ("Service", "ExecReload"): ["/bin/kill -HUP $MAINPID"],
        ("Service", "MemoryMax"): ["512M"],
        ("Service", "CPUQuota"): ["200%"],
        ("Service", "LimitNOFILE"): ["65536"],
        ("Service", "WatchdogSec"): ["60"],
        ("Service", "TimeoutStopSec"): ["45"],
        ("Service", "KillSignal"): ["SIGTERM"],
        ("Service", "StandardOutput"): ["journal"],
        ("Service", "StandardError"): ["journal"],
        ("Service", "NoNewPrivileges"): ["yes"],
        ("Service", "PrivateTmp"): ["yes"],
        ("Service", "ProtectSystem"): ["full"],
        ("Install", "WantedBy"): ["multi-user.target"],
    }
    assert {key: unit.get(key) for key in expected} == expected
    assert ("Service", "ProtectHome") not in unit  # the home dir must stay writable


def test_user_unit_runs_as_its_user_and_wants_default_target() -> None:
    unit = settings(render_systemd("/opt/oc/bin/python", "/home/a/.openclaw", "ignored", "ignored", False))
    assert ("Service", "User") not in unit and ("Service", "Group") not in unit
    assert ("Service", "ProtectSystem") not in unit  # namespacing needs privileges
    assert unit[("Service", "NoNewPrivileges")] == ["yes"]
    assert unit[("Install", "WantedBy")] == ["default.target"]


def test_system_unit_without_group_leaves_group_out() -> None:
    unit = settings(render_systemd("/opt/oc/bin/python", "/srv/oc", "openclaw", None, True))
    assert unit[("Service", "User")] == ["openclaw"]
    assert ("Service", "Group") not in unit


def test_template_notes_are_not_rendered() -> None:
    rendered = render_systemd("/opt/oc/bin/python", "/srv/oc", None, None, True)
    assert "##" not in rendered and "#system#" not in rendered
    assert "$" not in rendered.replace("$MAINPID", "")  # systemd expands that one itself


def test_home_with_space_and_specials_is_quoted() -> None:
    home = '/home/j doe/it\'s "mine" 100%$HOME\\x'
    unit = settings(render_systemd("/opt/oc/bin/python", home, None, None, False))
    [exec_start] = unit[("Service", "ExecStart")]
    assert shlex.split(exec_start)[-1].replace("%%", "%").replace("$$", "$") == home
    [environment] = unit[("Service", "Environment")]
    assert systemd_unquote(environment, exec_line=False) == f"OPENCLAW_HOME={home}"


@pytest.mark.parametrize("bad", [("relative/home", "openclaw"), ("/srv/oc", "bad user"), ("/srv/\nx", "openclaw")])
def test_render_refuses_bad_values(bad: tuple[str, str]) -> None:
    home, user = bad
    with pytest.raises(ValueError):
        render_systemd("/opt/oc/bin/python", home, user, None, True)


@given(unit_strings(), st.booleans())
def test_systemd_quote_roundtrips(value: str, exec_line: bool) -> None:
    assert systemd_unquote(systemd_quote(value, exec_line), exec_line) == value


@given(st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), max_codepoint=127), min_size=1))
def test_plain_words_stay_unquoted(value: str) -> None:
    assert systemd_quote(value) == value


@given(unit_strings(), st.characters(min_codepoint=0, max_codepoint=0x1F), unit_strings())
def test_systemd_quote_refuses_control_characters(before: str, control: str, after: str) -> None:
    with pytest.raises(ValueError):
        systemd_quote(before + control + after)


@pytest.fixture
def fake_venv(tmp_path: Path) -> str:
    """A python path whose directory (with a space) holds an executable twistd."""
    bin_dir = tmp_path / "my venv" / "bin"
    bin_dir.mkdir(parents=True)
    twistd = bin_dir / "twistd"
    twistd.write_text("#!/bin/sh\nexit 0\n")
    twistd.chmod(0o755)
    return str(bin_dir / "python")


def verify(unit_text: str, tmp_path: Path, user_manager: bool) -> subprocess.CompletedProcess:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required under CI (Debian package systemd)"
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "openclaw.service").write_text(unit_text)
    env = dict(os.environ)
    command = [SYSTEMD_ANALYZE, "verify"]
    if user_manager:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        command.insert(1, "--user")
    return subprocess.run(
        [*command, str(unit_dir / "openclaw.service")], env=env, capture_output=True, text=True
    )


@needs_systemd_analyze
@pytest.mark.parametrize("system", [True, False])
def test_systemd_analyze_verify_is_clean(system: bool, fake_venv: str, tmp_path: Path) -> None:
    """A home with a space, and twistd in a dir with a space: a quoting slip
    would make systemd look for a truncated, missing executable."""
    unit = render_systemd(fake_venv, "/home/j doe/.openclaw", "openclaw", "openclaw", system)
    result = verify(unit, tmp_path, user_manager=not system)
    complaints = [line for line in result.stderr.splitlines() if "openclaw.service" in line]
    assert (result.returncode, complaints) == (0, [])


@needs_systemd_analyze
def test_systemd_analyze_verifies_the_etc_unit(fake_venv: str, tmp_path: Path) -> None:
    """The shipped example, with its twistd path pointed at one that exists (verify checks that)."""
    shipped = (ROOT / "etc" / SYSTEMD_TEMPLATE).read_text("utf-8")
    assert shipped.replace(twistd_path(EXAMPLE_PYTHON), systemd_quote(twistd_path(fake_venv), exec_line=True)) == example_unit(fake_venv)
    result = verify(example_unit(fake_venv), tmp_path, user_manager=False)
    complaints = [line for line in result.stderr.splitlines() if "openclaw.service" in line]
    assert (result.returncode, complaints) == (0, [])
    assert settings(shipped)[("Service", "ExecReload")] == ["/bin/kill -HUP $MAINPID"]


@needs_systemd_analyze
def test_systemd_analyze_catches_an_unquoted_path(fake_venv: str, tmp_path: Path) -> None:
    """The verify test above can fail: the same unit with ExecStart unquoted."""
    unit = render_systemd(fake_venv, "/srv/oc", None, None, True)
    broken = unit.replace(systemd_quote(twistd_path(fake_venv), exec_line=True), twistd_path(fake_venv))
    assert broken != unit
    assert verify(broken, tmp_path, user_manager=False).returncode != 0


def test_launchd_plist_keys() -> None:
    home = "/Users/j doe/<&'\">/.openclaw"
    plist = plistlib.loads(render_launchd("/opt/oc/bin/python", home).encode())
    twistd = twistd_path("/opt/oc/bin/python")
    assert plist == {
        "Label": "com.openclaw.gateway",
        "ProgramArguments": [twistd, "-n", "--pidfile=", "openclaw", "--home", home],
        "EnvironmentVariables": {"OPENCLAW_HOME": home},
        "WorkingDirectory": home,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Background",
        "ThrottleInterval": 10,
        "StandardOutPath": f"{home}/logs/openclaw.out.log",
        "StandardErrorPath": f"{home}/logs/openclaw.err.log",
    }


def test_launchd_template_is_valid_plist() -> None:
    assert plistlib.loads((ROOT / "etc" / LAUNCHD_TEMPLATE).read_bytes())["Label"] == "com.openclaw.gateway"


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs"))))
def test_launchd_home_roundtrips(name: str) -> None:
    home = "/Users/x/" + name
    assert plistlib.loads(render_launchd("/opt/oc/bin/python", home).encode())["EnvironmentVariables"] == {
        "OPENCLAW_HOME": home
    }


def test_twistd_is_next_to_a_symlinked_interpreter(tmp_path: Path) -> None:
    """A virtualenv's python links out of the virtualenv; twistd must not follow it."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    assert twistd_path(str(tmp_path / "venv" / "bin" / "python")) == str((tmp_path / "venv" / "bin" / "twistd").resolve())


# --- the `openclaw service` command ---------------------------------------


def cli(argv: list[str], environ: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openclaw")
    add_service_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["service", *argv])
    assert args.func is run_service
    return run_service(args, environ if environ is not None else {"OPENCLAW_HOME": "/srv/openclaw"})


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    return tmp_path / "units"


def test_install_writes_rendered_unit_and_prints_commands(unit_dir: Path, capsys) -> None:
    assert cli(["install", "--systemd", "--user", "--unit-dir", str(unit_dir)]) == 0
    written = (unit_dir / "openclaw.service").read_text()
    assert written == render_systemd(sys.executable, "/srv/openclaw", None, None, False)
    assert (unit_dir / "openclaw.service").stat().st_mode & 0o777 == 0o644
    out = capsys.readouterr().out
    assert "systemctl --user daemon-reload && systemctl --user enable --now openclaw.service" in out


@pytest.mark.parametrize("manager", ["systemd", "launchd"])
def test_install_says_when_the_service_manager_is_not_running(manager: str, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(install.RUNNING_MARKERS, manager, str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    environ = {"OPENCLAW_HOME": "/srv/my openclaw", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert cli(["install", f"--{manager}"], environ) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: {manager} is not running here")
    assert f"{shlex.quote(twistd_path(sys.executable))} -n --pidfile= openclaw --home '/srv/my openclaw'" in err
    assert not (tmp_path / "config").exists() and not (tmp_path / "home").exists()  # nothing written


def test_install_writes_where_the_running_manager_reads(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "run-systemd").mkdir()
    monkeypatch.setitem(install.RUNNING_MARKERS, "systemd", str(tmp_path / "run-systemd"))
    environ = {"OPENCLAW_HOME": "/srv/openclaw", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert cli(["install", "--systemd", "--user"], environ) == 0
    assert (tmp_path / "config" / "systemd" / "user" / "openclaw.service").read_text().startswith("# openclaw")
    assert "systemctl --user daemon-reload" in capsys.readouterr().out


def test_system_install_fills_user_and_plain_systemctl(unit_dir: Path, capsys) -> None:
    argv = ["install", "--systemd", "--system", "--run-as", "nobody", "--unit-dir", str(unit_dir)]
    assert cli(argv) == 0
    unit = settings((unit_dir / "openclaw.service").read_text())
    assert unit[("Service", "User")] == ["nobody"]
    assert unit[("Install", "WantedBy")] == ["multi-user.target"]
    assert "systemctl daemon-reload && systemctl enable --now openclaw.service" in capsys.readouterr().out


def test_system_install_defaults_home_to_the_run_as_users(unit_dir: Path) -> None:
    argv = ["install", "--systemd", "--system", "--run-as", "root", "--unit-dir", str(unit_dir)]
    assert cli(argv, environ={}) == 0
    unit = settings((unit_dir / "openclaw.service").read_text())
    assert unit[("Service", "Environment")] == [f"OPENCLAW_HOME={os.path.expanduser('~root')}/.openclaw"]


def test_print_writes_nothing(unit_dir: Path, capsys) -> None:
    assert cli(["install", "--systemd", "--print", "--home", "/home/j doe/oc", "--unit-dir", str(unit_dir)]) == 0
    assert capsys.readouterr().out == render_systemd(sys.executable, "/home/j doe/oc", None, None, False)
    assert not unit_dir.exists()


def test_reinstall_identical_is_a_no_op(unit_dir: Path, capsys) -> None:
    assert cli(["install", "--systemd", "--unit-dir", str(unit_dir)]) == 0
    before = (unit_dir / "openclaw.service").stat()
    assert cli(["install", "--systemd", "--unit-dir", str(unit_dir)]) == 0
    assert "already installed and up to date" in capsys.readouterr().out
    assert (unit_dir / "openclaw.service").stat().st_ino == before.st_ino


def test_differing_unit_needs_force(unit_dir: Path, capsys) -> None:
    unit_dir.mkdir()
    (unit_dir / "openclaw.service").write_text("# hand-edited\n")
    assert cli(["install", "--systemd", "--unit-dir", str(unit_dir)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (unit_dir / "openclaw.service").read_text() == "# hand-edited\n"
    assert cli(["install", "--systemd", "--force", "--unit-dir", str(unit_dir)]) == 0
    assert (unit_dir / "openclaw.service").read_text().startswith("# openclaw")
    assert [p.name for p in unit_dir.iterdir()] == ["openclaw.service"]  # no temp files left


def test_status_reports_missing_current_and_outdated(unit_dir: Path, capsys) -> None:
    base = ["--systemd", "--unit-dir", str(unit_dir)]
    assert cli(["status", *base]) == install.STATUS_MISSING
    assert "installed: no" in capsys.readouterr().out
    cli(["install", *base])
    capsys.readouterr()
    assert cli(["status", *base]) == install.STATUS_CURRENT
    out = capsys.readouterr().out
    assert str(unit_dir / "openclaw.service") in out and "matches current render: yes" in out
    assert cli(["status", *base, "--home", "/elsewhere"]) == install.STATUS_OUTDATED
    assert "matches current render: no" in capsys.readouterr().out


def test_uninstall_removes_unit_and_enablement_link(unit_dir: Path, capsys) -> None:
    base = ["--systemd", "--user", "--unit-dir", str(unit_dir)]
    cli(["install", *base])
    wants = unit_dir / "default.target.wants"
    wants.mkdir()
    (wants / "openclaw.service").symlink_to(unit_dir / "openclaw.service")
    capsys.readouterr()
    assert cli(["uninstall", *base]) == 0
    assert sorted(p.name for p in unit_dir.rglob("*")) == ["default.target.wants"]
    assert "systemctl --user stop openclaw.service" in capsys.readouterr().out
    assert cli(["uninstall", *base]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_launchd_install_and_uninstall(unit_dir: Path, tmp_path: Path, capsys) -> None:
    home = tmp_path / "oc home"
    base = ["--launchd", "--unit-dir", str(unit_dir)]
    assert cli(["install", *base, "--home", str(home)]) == 0
    plist = plistlib.loads((unit_dir / "com.openclaw.gateway.plist").read_bytes())
    assert plist["EnvironmentVariables"] == {"OPENCLAW_HOME": str(home)}
    assert (home / "logs").is_dir()  # launchd creates no directories
    assert "launchctl bootstrap gui/$(id -u)" in capsys.readouterr().out
    assert cli(["uninstall", *base]) == 0
    assert not (unit_dir / "com.openclaw.gateway.plist").exists()
    assert "launchctl bootout gui/$(id -u)/com.openclaw.gateway" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["install", "--launchd", "--system", "--print"],
        ["install", "--systemd", "--user", "--run-as", "nobody", "--print"],
        ["install", "--systemd", "--system", "--run-as", "no-such-user-here", "--print"],
        ["install", "--systemd", "--home", "/srv/bad\nhome", "--print"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys) -> None:
    assert cli(argv, environ={}) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_unwritable_unit_dir_is_a_clear_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli(["install", "--systemd", "--unit-dir", str(blocker / "sub")]) == 1
    assert "error: cannot" in capsys.readouterr().err


def test_choose_manager() -> None:
    assert choose_manager("linux", None) == "systemd"
    assert choose_manager("darwin", None) == "launchd"
    assert choose_manager("linux", "launchd") == "launchd"
    with pytest.raises(UsageError):
        choose_manager("win32", None)


def test_default_unit_paths() -> None:
    assert unit_path("systemd", "system", None, {}) == "/etc/systemd/system/openclaw.service"
    assert unit_path("systemd", "user", None, {"XDG_CONFIG_HOME": "/c"}) == "/c/systemd/user/openclaw.service"
    assert unit_path("systemd", "user", None, {}) == os.path.expanduser("~/.config/systemd/user/openclaw.service")
    assert unit_path("launchd", "user", None, {}) == os.path.expanduser(
        "~/Library/LaunchAgents/com.openclaw.gateway.plist"
    )


def test_failed_write_is_a_clear_error_and_leaves_no_temp_file(unit_dir: Path, monkeypatch, capsys) -> None:
    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(install.os, "replace", refuse)
    assert cli(["install", "--systemd", "--unit-dir", str(unit_dir)]) == 1
    assert f"cannot write {unit_dir / 'openclaw.service'}: Permission denied" in capsys.readouterr().err
    assert list(unit_dir.iterdir()) == []
