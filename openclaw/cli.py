"""
The ``openclaw`` command: ``status``, ``init``, ``version``, ``service``,
``send``, ``chat``, ``console`` and the daemon controls (``pairing``,
``checks``, ``heartbeat``, ``report``).

It runs without a reactor: each subcommand is a short synchronous job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from importlib import resources
from typing import Any, Sequence

from openclaw import __version__, runfile
from openclaw.chat_cli import add_chat_parsers
from openclaw.client import endpoint_url
from openclaw.config import (
    EX_CONFIG,
    ConfigError,
    config_path,
    default_home,
    load_config,
    render_example,
)
from openclaw.backup_cli import add_backup_parser
from openclaw.config_cli import add_config_parser, add_location_options
from openclaw.console_cli import add_console_parser
from openclaw.control_cli import add_control_parsers
from openclaw.doctor.command import add_doctor_parser
from openclaw.logs_cli import add_logs_parser
from openclaw.system.install import add_service_parser, run_service


def health_url(web_listen: str) -> str:
    """The ``/health`` URL for a ``tcp:PORT[:interface=ADDR]`` endpoint."""
    parts = web_listen.split(":")
    if parts[0] not in ("tcp", "tcp6") or len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"cannot reach {web_listen!r} over HTTP; pass --url")
    return endpoint_url("http", web_listen, parts[1]) + "health"


def summarize(code: int, body: dict[str, Any]) -> str:
    """A few readable lines from a ``/health`` body."""
    memory = body.get("memory") or {}
    lines = [
        f"openclaw {body.get('status', '?')} (HTTP {code}), up {body.get('uptime', 0):.0f}s",
        f"  memory: {memory.get('rss_bytes', 0) / 2**20:.1f} MiB RSS, peak {memory.get('peak_rss_bytes', 0) / 2**20:.1f} MiB",
        f"  sessions: {body.get('sessions', 0)}; last heartbeat: {body.get('last_heartbeat') or 'none yet'}",
    ]
    lines += [f"  problem: {problem}" for problem in body.get("problems") or []]
    config = body.get("config") or {}
    if config:
        lines.append(f"  config: {config.get('path') or 'built-in defaults'} (digest {config.get('digest')})")
        reload = config.get("last_reload")
        if reload:
            lines.append(f"  last reload: {reload['result']} at {reload['at']}"
                         + (f": {reload['reason']}" if reload.get("reason") else "")
                         + (f"; needs a restart: {', '.join(reload['restart_needed'])}" if reload.get("restart_needed") else ""))
    for name, state in sorted((body.get("services") or {}).items()):
        lines.append(f"  service {name}: {state}")
    details = body.get("connectors") or {}
    for name, up in sorted((body.get("connections") or {}).items()):
        standby = (details.get(name) or {}).get("state") == "standby"
        lines.append(f"  connector {name}: {'connected' if up else 'standby (another instance holds it)' if standby else 'DOWN'}")
    cluster = body.get("cluster") or {}
    if cluster.get("instances"):  # several daemons on one Redis (none listed: this one alone)
        lines.append(f"  cluster: this instance {cluster.get('instance_id')}")
        for instance in cluster["instances"]:
            lines.append(f"  instance {instance.get('id')}: holds {', '.join(instance.get('holds') or []) or 'nothing'}")
    return "\n".join(lines)


def status_url(args: argparse.Namespace) -> str:
    """``--url``, else the running daemon's (``daemon.json``), else the config's ``web.listen``."""
    if args.url:
        return args.url
    home = os.path.abspath(os.path.expanduser(args.home or default_home()))
    running = runfile.read(home)
    if running and running.get("web"):
        return running["web"] + "health"
    return health_url(load_config(config_path(args.config, home)).web.listen)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        url = status_url(args)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            code, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        code, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        print(f"openclaw is not answering at {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    try:
        body = json.loads(raw)
    except ValueError:
        print(f"unexpected answer from {url} (HTTP {code})", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else summarize(code, body))
    return 0 if code == 200 else 1


def _write_new(path: str, text: str, mode: int) -> bool:
    """Create ``path`` with ``text``; False (and nothing written) if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def cmd_init(args: argparse.Namespace) -> int:
    home = os.path.abspath(os.path.expanduser(args.home or default_home()))
    os.makedirs(home, mode=0o700, exist_ok=True)
    heartbeat = resources.files("openclaw").joinpath("templates/HEARTBEAT.md").read_text("utf-8")
    for name, text in (("openclaw.yaml", render_example()), ("HEARTBEAT.md", heartbeat)):
        path = os.path.join(home, name)
        print(f"{'wrote' if _write_new(path, text, 0o600) else 'kept existing'} {path}")
    print(f"run: twistd -n openclaw --home {home}   (it reads {os.path.join(home, 'openclaw.yaml')})")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"openclaw {__version__}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="openclaw", description="Control and inspect the openclaw daemon.")
    sub = top.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="read /health and print a summary (exit 0 when healthy)")
    status.add_argument("--url", help="the /health URL (default: from the config's web.listen)")
    add_location_options(status)
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(func=cmd_status)
    init = sub.add_parser("init", help="write a commented config and HEARTBEAT.md into the home dir")
    init.add_argument("--home", help="home directory (default: $OPENCLAW_HOME, else ~/.openclaw)")
    init.set_defaults(func=cmd_init)
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    add_chat_parsers(sub)
    add_control_parsers(sub)
    add_backup_parser(sub)
    add_service_parser(sub)
    add_config_parser(sub)
    add_doctor_parser(sub)
    add_logs_parser(sub)
    add_console_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run one subcommand.  Whatever goes wrong ends in one line on stderr and
    exit 1 (78 for a bad config), never a traceback; a closed pipe
    (``openclaw report | head``) ends quietly.
    """
    args = parser().parse_args(argv)
    try:
        code = run_service(args) if args.command == "service" else args.func(args)
        sys.stdout.flush()
        return code
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        # Python would complain again flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("openclaw: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"openclaw: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1
    except Exception as e:  # the last line of defence: one line, not a traceback
        print(f"openclaw: {args.command} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
