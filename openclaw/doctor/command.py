"""The ``openclaw doctor`` subcommand: run every check, print the findings, exit 1 on a failure."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace
from typing import Any, Callable

from openclaw import runfile
from openclaw.config import Config, ConfigError, config_path, default_home, load_config
from openclaw.config.loading import ConfigErrors
from openclaw.config_cli import add_location_options
from openclaw.doctor import local, remote
from openclaw.doctor.findings import FAIL, OK, Context, Finding, render

CHECKS: tuple[tuple[str, Callable[[Context], list[Finding]]], ...] = (
    ("permissions", local.check_permissions),
    ("token", local.check_token),
    ("ports", local.check_ports),
    ("store", local.check_store),
    ("daemon", local.check_daemon),
    ("service unit", local.check_unit),
    ("connectors", remote.check_connectors),
    ("mail", remote.check_mail),
    ("providers", remote.check_providers),
    ("disk", local.check_disk),
    ("open files", local.check_nofile),
)


def load(home: str, explicit: str | None, environ: Any) -> tuple[Context, list[Finding]]:
    """The context and the config's findings: every error at once; a broken file leaves the defaults."""
    path = config_path(explicit, home, environ)
    running = runfile.read(home) or {}
    try:
        config = load_config(path, environ, running.get("overrides") or {})
    except ConfigError as e:
        errors = e.errors if isinstance(e, ConfigErrors) else [e]
        findings = [Finding(FAIL, "config", str(error), f"edit {path or 'the environment'}; openclaw config check")
                    for error in errors]
        return Context(home, path, Config(), environ, config_ok=False, running=running), findings
    where = path or "no file (built-in defaults)"
    return Context(home, path, config, environ, running=running), [Finding(OK, "config", f"{where} is valid")]


def diagnose(home: str, explicit: str | None, environ: Any, timeout: float) -> list[Finding]:
    """Every finding, in order; a check that breaks becomes a failure of its own, not a traceback."""
    ctx, findings = load(home, explicit, environ)
    ctx = Context(ctx.home, ctx.path, ctx.config, ctx.environ, timeout, ctx.config_ok, ctx.running)
    for title, check in CHECKS:
        try:
            findings += check(ctx)
        except Exception as e:  # a doctor reports, it does not crash
            findings.append(Finding(FAIL, title, f"the check itself failed: {type(e).__name__}: {e}",
                                    "report this as a bug"))
    return findings


def cmd_doctor(args: argparse.Namespace) -> int:
    home = os.path.abspath(os.path.expanduser(args.home or default_home()))
    findings = diagnose(home, args.config, os.environ, args.timeout)
    if args.json:
        print(json.dumps({"ok": all(f.status != FAIL for f in findings),
                          "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        print(render(findings))
    return 1 if any(f.status == FAIL for f in findings) else 0


def cmd_mail(args: argparse.Namespace) -> int:
    """``mail test [NAME]``: log in to each watched mailbox (or the named one) from here, as the daemon would."""
    home = os.path.abspath(os.path.expanduser(args.home or default_home()))
    config = load_config(config_path(args.config, home))  # a ConfigError ends the command with 78
    mailboxes = tuple(m for m in config.mail if args.name in (None, m.name))
    if not mailboxes:
        known = ", ".join(m.name for m in config.mail) or "none configured"
        print(f"openclaw: no mailbox {args.name!r} (known: {known})" if args.name else
              "openclaw: no mailboxes configured (the mail: section)", file=sys.stderr)
        return 1
    ctx = Context(home, None, replace(config, mail=mailboxes), os.environ, args.timeout)
    found = remote.check_mail(ctx)
    print(render(found))
    return 1 if any(f.status == FAIL for f in found) else 0


def add_doctor_parser(sub: Any) -> None:
    parser = sub.add_parser("doctor", help="check the config, home, ports, store, daemon and credentials; say what to fix")
    add_location_options(parser)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds each network check may take (default 5)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=cmd_doctor)
    mail = sub.add_parser("mail", help="test: log in to the watched mailboxes with the config's credentials")
    mail.add_argument("action", choices=("test",))
    mail.add_argument("name", nargs="?", help="one mailbox by name (default: all)")
    add_location_options(mail)
    mail.add_argument("--timeout", type=float, default=10.0, help="seconds each login may take (default 10)")
    mail.set_defaults(func=cmd_mail)
