"""
``openclaw service install|uninstall|status``: put the daemon under the OS
service manager (systemd on Linux, launchd on macOS).

It writes one file and prints the commands that load it; it never runs
systemctl or launchctl itself, so it is safe to try with ``--print`` and
the operator stays in charge of when the daemon starts.
"""

import argparse
import getpass
import os
import pwd
import shlex
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from openclaw.config import default_home
from openclaw.system.units import render_launchd, render_systemd, twistd_path

SYSTEMD_UNIT = "openclaw.service"
LAUNCHD_LABEL = "com.openclaw.gateway"

#: What exists only where the manager runs: systemd's runtime directory
#: (sd_booted(3)'s test), launchd's control tool (macOS has it at boot).
RUNNING_MARKERS = {"systemd": "/run/systemd/system", "launchd": "/bin/launchctl"}

# Exit codes of `status`, after the LSB ones `systemctl status` uses.
STATUS_CURRENT, STATUS_OUTDATED, STATUS_MISSING = 0, 1, 3


class UsageError(Exception):
    """A combination of options that cannot work; one line for stderr."""


def add_service_parser(subparsers: argparse._SubParsersAction) -> None:
    """
    Add ``service`` to the ``openclaw`` command's subcommands.  The parser
    sets ``func=run_service`` for callers that dispatch on ``args.func``.
    """
    service = subparsers.add_parser(
        "service",
        help="install openclaw as a systemd or launchd service",
        description="Write, remove or check the systemd unit / launchd agent that runs openclaw.",
    )
    service.set_defaults(func=run_service)
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="write the unit and print how to start it")
    uninstall = actions.add_parser("uninstall", help="remove the unit and print how to stop it")
    status = actions.add_parser("status", help="say where the unit is and whether it is current")
    for parser in (install, uninstall, status):
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--user", dest="scope", action="store_const", const="user",
            help="a per-user service (the default)",
        )
        scope.add_argument(
            "--system", dest="scope", action="store_const", const="system",
            help="a system-wide systemd service (run as root)",
        )
        manager = parser.add_mutually_exclusive_group()
        manager.add_argument(
            "--systemd", dest="manager", action="store_const", const="systemd",
            help="systemd, whatever this platform is",
        )
        manager.add_argument(
            "--launchd", dest="manager", action="store_const", const="launchd",
            help="launchd, whatever this platform is",
        )
        parser.add_argument(
            "--unit-dir", metavar="DIR",
            help="use DIR instead of the directory the service manager reads (packaging, tests)",
        )
        parser.set_defaults(scope="user", manager=None)
    for parser in (install, status):
        parser.add_argument("--home", metavar="DIR", help="openclaw home (default: $OPENCLAW_HOME, else ~/.openclaw)")
        parser.add_argument(
            "--run-as", metavar="USER",
            help="--system only: the account to run as (default: $SUDO_USER, else the current user)",
        )
        parser.add_argument("--run-as-group", metavar="GROUP", help="--system only: the group to run as")
    install.add_argument("--print", dest="print_only", action="store_true", help="print the unit instead of writing it")
    install.add_argument("--force", action="store_true", help="replace an existing unit that differs")


@dataclass(frozen=True)
class Target:
    """Which service manager, which scope, and the unit file's path."""

    manager: str
    scope: str
    path: str


def choose_manager(platform: str, override: str | None) -> str:
    """systemd on Linux, launchd on macOS, or what ``override`` says."""
    if override is not None:
        return override
    if platform.startswith("linux"):
        return "systemd"
    if platform == "darwin":
        return "launchd"
    raise UsageError(f"no supported service manager on {platform}; try --systemd or --launchd with --print")


def unit_path(manager: str, scope: str, unit_dir: str | None, environ: Mapping[str, str]) -> str:
    """Where the service manager reads the unit from (or ``unit_dir``)."""
    if manager == "launchd":
        if scope == "system":
            raise UsageError("launchd: only per-user agents (--user) are supported")
        name = LAUNCHD_LABEL + ".plist"
        default_dir = os.path.expanduser("~/Library/LaunchAgents")
    else:
        name = SYSTEMD_UNIT
        if scope == "system":
            default_dir = "/etc/systemd/system"
        else:
            config = environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
            default_dir = os.path.join(config, "systemd", "user")
    return os.path.join(unit_dir or default_dir, name)


def _target(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    manager = choose_manager(sys.platform, args.manager)
    return Target(manager, args.scope, unit_path(manager, args.scope, args.unit_dir, environ))


def _render(args: argparse.Namespace, target: Target, environ: Mapping[str, str]) -> tuple[str, str]:
    """The unit for this interpreter, home and account, and that home."""
    user = group = None
    if target.scope == "system":
        user = args.run_as or environ.get("SUDO_USER") or getpass.getuser()
        group = args.run_as_group
    elif args.run_as or args.run_as_group:
        raise UsageError("--run-as and --run-as-group only apply to --system")
    if args.home:
        home = args.home
    elif user is not None and not environ.get("OPENCLAW_HOME"):
        # A --system install run through sudo: the service's home, not root's.
        try:
            home = os.path.join(pwd.getpwnam(user).pw_dir, ".openclaw")
        except KeyError:
            raise UsageError(f"no such user {user!r}; pass --run-as or --home") from None
    else:
        home = default_home(environ)
    home = os.path.abspath(os.path.expanduser(home))
    try:
        if target.manager == "launchd":
            return render_launchd(sys.executable, home), home
        return render_systemd(sys.executable, home, user, group, target.scope == "system"), home
    except ValueError as e:
        raise UsageError(str(e)) from None


def start_commands(target: Target) -> list[str]:
    """The shell commands that load and start an installed unit."""
    if target.manager == "launchd":
        return [
            f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL} 2>/dev/null;"
            f" launchctl bootstrap gui/$(id -u) {shlex.quote(target.path)}",
        ]
    ctl = "systemctl --user" if target.scope == "user" else "systemctl"
    commands = [
        f"{ctl} daemon-reload && {ctl} enable --now {SYSTEMD_UNIT}",
        f"{ctl} restart {SYSTEMD_UNIT}   # if it was already running",
    ]
    if target.scope == "user":
        commands.append("loginctl enable-linger \"$USER\"   # keep it running when you are logged out")
    return commands


def stop_commands(target: Target) -> list[str]:
    """The shell commands that stop a unit whose file was removed."""
    if target.manager == "launchd":
        return [f"launchctl bootout gui/$(id -u)/{LAUNCHD_LABEL}"]
    ctl = "systemctl --user" if target.scope == "user" else "systemctl"
    return [f"{ctl} stop {SYSTEMD_UNIT} && {ctl} daemon-reload"]


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path: str, content: str) -> None:
    """Replace ``path`` atomically, so a unit is never seen half-written."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".openclaw-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _install(args: argparse.Namespace, target: Target, environ: Mapping[str, str]) -> int:
    content, home = _render(args, target, environ)
    twistd = twistd_path(sys.executable)
    if not os.access(twistd, os.X_OK):
        print(f"warning: {twistd} is not executable; is openclaw installed next to {sys.executable}?", file=sys.stderr)
    if args.print_only:
        sys.stdout.write(content)
        return 0
    if args.unit_dir is None and not os.path.exists(RUNNING_MARKERS[target.manager]):
        # A container or a chroot: a unit written here would never start.
        print(
            f"error: {target.manager} is not running here ({RUNNING_MARKERS[target.manager]} is missing),"
            f" so nothing would start the unit; run the daemon directly instead:"
            f" {shlex.quote(twistd)} -n --pidfile= openclaw --home {shlex.quote(home)}"
            " (or write the unit for another machine with --print or --unit-dir)",
            file=sys.stderr,
        )
        return 1
    existing = _read(target.path)
    if existing == content:
        print(f"{target.path} is already installed and up to date.")
    elif existing is not None and not args.force:
        print(
            f"error: {target.path} exists and differs from what would be written;"
            " compare with --print, then use --force to replace it",
            file=sys.stderr,
        )
        return 1
    else:
        try:
            _write(target.path, content)
            if target.manager == "launchd":
                # launchd opens the log files but creates no directories,
                # and will not spawn into a missing WorkingDirectory.
                os.makedirs(os.path.join(home, "logs"), mode=0o700, exist_ok=True)
        except OSError as e:
            print(f"error: cannot write {target.path}: {e.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {target.path}")
    print("To start it now and at every boot/login, run:")
    for command in start_commands(target):
        print(f"  {command}")
    return 0


def _uninstall(target: Target) -> int:
    removed = []
    paths = [target.path]
    if target.manager == "systemd":
        # What `systemctl disable` removes: the [Install] WantedBy= symlink.
        wanted_by = "multi-user.target" if target.scope == "system" else "default.target"
        paths.append(os.path.join(os.path.dirname(target.path), f"{wanted_by}.wants", SYSTEMD_UNIT))
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            print(f"error: cannot remove {path}: {e.strerror}", file=sys.stderr)
            return 1
        removed.append(path)
    if not removed:
        print(f"{target.path} is not installed; nothing to remove.")
        return 0
    for path in removed:
        print(f"removed {path}")
    print("To stop the running service, run:")
    for command in stop_commands(target):
        print(f"  {command}")
    return 0


def _status(args: argparse.Namespace, target: Target, environ: Mapping[str, str]) -> int:
    existing = _read(target.path)
    print(f"{target.manager} unit ({target.scope}): {target.path}")
    if existing is None:
        print("installed: no")
        return STATUS_MISSING
    print("installed: yes")
    if existing == _render(args, target, environ)[0]:
        print("matches current render: yes")
        return STATUS_CURRENT
    print("matches current render: no (see `openclaw service install --print`; replace with --force)")
    return STATUS_OUTDATED


def run_service(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """
    Run ``openclaw service ...``.

    :return: the exit code: 0 done; 1 refused or failed (message on
        stderr); 2 a usage error; ``status`` also 1 for a unit that differs
        from the current render and 3 for none installed.
    """
    try:
        target = _target(args, environ)
        if args.service_command == "install":
            return _install(args, target, environ)
        if args.service_command == "uninstall":
            return _uninstall(target)
        return _status(args, target, environ)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot access {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
