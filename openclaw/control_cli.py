"""
Subcommands that ask the running daemon one thing over the gateway and print
the answer: ``pairing``, ``checks``, ``heartbeat``, ``report``, ``reload``,
``alerts``.

Each is a (method, params) pair and a renderer; the daemon does the work,
so the CLI never opens the store itself (SQLite or Redis alike).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred

from openclaw.chat_cli import _react, _target, cli_client_id, when
from openclaw.client import GatewayClient, explain
from openclaw.config.parsing import format_duration, parse_duration


def call(args: argparse.Namespace, method: str, params: dict) -> tuple[Any, str | None]:
    """Call ``method`` on the daemon's gateway; :return: ``(payload, error)``."""
    target = _target(args)
    if target is None:  # _target has said why
        return None, ""
    url, token = target
    outcome: dict[str, Any] = {}

    def run(reactor: Any) -> Deferred:
        client = GatewayClient(url, token, lambda name, payload: None, client=cli_client_id())
        d = client.connect(reactor)
        d.addCallback(lambda _: client.request(method, params))
        d.addTimeout(args.timeout, reactor)
        d.addCallback(lambda payload: outcome.update(payload=payload))
        d.addErrback(lambda f: outcome.update(error=explain(f, args.timeout)))
        d.addBoth(lambda _: client.close() if client._protocol is not None else None)
        return d

    _react(run)
    return outcome.get("payload"), outcome.get("error")


def render_pairing(payload: dict) -> str:
    lines = ["Waiting for approval:" if payload["pending"] else "No pairing requests are waiting."]
    for p in payload["pending"]:
        lines.append(f"  {p['code']}  {p['connector']}:{p['sender_id']}  {p.get('sender_name') or ''}"
                     f"  (expires {when(p['expires'])})")
    lines.append("Approved by pairing:" if payload["approved"] else "Nobody is approved by pairing yet.")
    lines += [f"  {a['sender']}  {a.get('sender_name') or ''}" for a in payload["approved"]]
    return "\n".join(lines)


def render_checks(payload: dict) -> str:
    from openclaw.proactive.checks import format_states

    return format_states(payload["checks"], time.time())


def render_beat(payload: dict) -> str:
    fields = [f"verdict: {payload.get('verdict')}"]
    fields += [f"{k}: {payload[k]}" for k in ("reason", "duration", "actions", "error", "skipped") if payload.get(k)]
    if payload.get("checked"):
        fields += ["checked:"] + [f"  - {line}" for line in payload["checked"]]
    if payload.get("note"):
        fields.append(f"note: {payload['note']}")
    if payload.get("not_acted_on"):
        fields += ["HEARTBEAT.md items not acted on without a model:"]
        fields += [f"  - {item}" for item in payload["not_acted_on"]]
    return "\n".join(fields)


def render_heartbeat_status(payload: dict) -> str:
    hours = payload.get("active_hours")
    return "\n".join([
        f"last: {payload.get('last') or 'never'} ({payload.get('last_verdict') or 'no verdict yet'})",
        f"next: {payload.get('next') or 'not scheduled'}",
        f"every: {format_duration(payload.get('every') or 0)}" + (f", active {hours['start']}-{hours['end']}" if hours else ""),
        f"timezone: {payload.get('timezone')}",
        "OVERDUE: no heartbeat completed within twice the interval" if payload.get("overdue") else "on time",
    ])


def render_cron(payload: dict) -> str:
    if not payload["jobs"]:
        return "No cron jobs."
    lines = []
    for job in payload["jobs"]:
        last = f"last {when(job['last_run'])} {job.get('outcome') or ''}".rstrip() if job.get("last_run") else "never run"
        lines.append(f"{job['name']}  {job['schedule']} ({job['timezone']})  {job['action']}  "
                     f"next {when(job['next_due']) if job.get('next_due') else '-'}  {last}"
                     + ("  RUNNING" if job.get("running") else "") + (f"  error: {job['error']}" if job.get("error") else ""))
    return "\n".join(lines)


def render_alerts(payload: dict) -> str:
    if not payload["alerts"]:
        return "No alerts or recoveries in that time."
    return "\n".join(f"{when(a['timestamp'])}  [{a.get('kind')}] {a.get('check')}: {a.get('message')}"
                     + (f"  (to {a['session']})" if a.get("session") else "  (nobody to tell)")
                     for a in payload["alerts"])


def render_reload(payload: dict) -> str:
    if payload["result"] == "rejected":
        return f"reload rejected, nothing changed: {payload['reason']}"
    lines = [f"reload {payload['result']}" + (f": {', '.join(payload['changed'])}" if payload["changed"] else "")]
    if payload["restart_needed"]:
        lines.append(f"needs a restart to apply: {', '.join(payload['restart_needed'])}")
    if payload["failed"]:
        lines.append(f"failed to reconfigure (kept as they were): {', '.join(payload['failed'])}")
    return "\n".join(lines)


# The answers that make the command exit 1 (for scripts and monitoring).
FAILED: dict[str, Callable[[Any], bool]] = {
    "checks.list": lambda p: any(c.get("alerting") for c in p["checks"]),
    "checks.run": lambda p: bool(p["check"].get("alerting")) or p["check"].get("ok") is False,
    "heartbeat.run": lambda p: p.get("verdict") == "failed",
    "heartbeat.status": lambda p: bool(p.get("overdue")),
    "reload": lambda p: p["result"] == "rejected" or bool(p["failed"]),
}


def _method(args: argparse.Namespace) -> tuple[str, dict, Callable[[Any], str]]:
    """The gateway method, its params and how to print the answer, for ``args``."""
    if args.command == "checks":
        if args.action == "run":
            return "checks.run", {"name": args.name}, lambda p: render_checks({"checks": [p["check"]]})
        return "checks.list", {}, render_checks
    if args.command == "cron":
        return "cron.list", {}, render_cron
    if args.command == "heartbeat":
        if args.action == "now":
            return "heartbeat.run", {"instruction": args.instruction or ""}, render_beat
        return "heartbeat.status", {}, render_heartbeat_status
    if args.command == "report":
        params = {"today": True} if args.today else {"date": args.date} if args.date else {}
        return "reports.get", params, lambda p: p["markdown"].rstrip()
    if args.command == "reload":
        return "reload", {}, render_reload
    if args.command == "alerts":
        return "alerts.list", {"since": args.since, "all": args.all}, render_alerts
    if args.command == "pairing":
        if args.action == "approve":
            return "pairing.approve", {"code": args.arg}, lambda p: f"approved {p['sender']}"
        if args.action == "revoke":
            return "pairing.revoke", {"sender": args.arg}, lambda p: (
                f"revoked {args.arg}" if p["revoked"] else f"{args.arg} was not approved")
        return "pairing.list", {}, render_pairing
    raise ValueError(args.command)


def cmd_control(args: argparse.Namespace) -> int:
    if args.command == "pairing" and args.action in ("approve", "revoke") and not args.arg:
        print(f"openclaw: pairing {args.action} needs a {'code' if args.action == 'approve' else 'channel:id'}",
              file=sys.stderr)
        return 2
    if args.command == "checks" and args.action == "run" and not args.name:
        print("openclaw: checks run needs a check's name (see openclaw checks)", file=sys.stderr)
        return 2
    if args.command == "report" and args.today and args.date:
        print("openclaw: report takes a date or --today, not both", file=sys.stderr)
        return 2
    method, params, render = _method(args)
    payload, error = call(args, method, params)
    if error is not None:
        if error:
            print(f"openclaw: {error}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2) if args.json else render(payload))
    return 1 if FAILED.get(method, lambda p: False)(payload) else 0


def _since(value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def _common(parser: argparse.ArgumentParser, timeout: float = 30.0) -> None:
    parser.add_argument("--gateway", help="ws://host:port/ (default: $OPENCLAW_GATEWAY_URL, else the running "
                        "daemon's <home>/daemon.json, else the config)")
    parser.add_argument("--home", help="the daemon's home, for its token (default: $OPENCLAW_HOME, else ~/.openclaw)")
    parser.add_argument("--timeout", type=float, default=timeout, help=f"seconds to wait for the daemon (default {timeout:g})")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.set_defaults(func=cmd_control)


def add_control_parsers(sub: Any) -> None:
    """The subcommands that talk to the running daemon through its gateway."""
    pairing = sub.add_parser("pairing", help="list, approve or revoke chat senders paired by code")
    pairing.add_argument("action", choices=("list", "approve", "revoke"))
    pairing.add_argument("arg", nargs="?", help="approve: the 6-digit code; revoke: channel:sender-id")
    _common(pairing)
    checks = sub.add_parser("checks", help="the checks and their state, or run one now (exit 1 while one is alerting)")
    checks.add_argument("action", nargs="?", choices=("list", "run"), default="list")
    checks.add_argument("name", nargs="?", help="run: the check's name")
    _common(checks)
    cron = sub.add_parser("cron", help="the cron jobs: schedule, last and next run")
    cron.add_argument("action", nargs="?", choices=("list",), default="list")
    _common(cron)
    heartbeat = sub.add_parser("heartbeat", help="run a heartbeat now, or show when the last and next are")
    heartbeat.add_argument("action", choices=("now", "status"))
    heartbeat.add_argument("--instruction", help="now: an extra instruction for this beat")
    _common(heartbeat, timeout=300.0)  # a beat with a model can take minutes
    reload = sub.add_parser("reload", help="re-read the config and apply what changed (as SIGHUP does)")
    _common(reload)
    alerts = sub.add_parser("alerts", help="recent alerts and recoveries, from the journal")
    alerts.add_argument("--since", type=_since, default=86400.0, help="how far back, e.g. 6h, 7d (default 1d)")
    alerts.add_argument("--all", action="store_true", help="include info messages (cron, reports, mail)")
    _common(alerts)
    report = sub.add_parser("report", help="print a morning report (default: the latest)")
    report.add_argument("date", nargs="?", help="YYYY-MM-DD")
    report.add_argument("--today", action="store_true", help="today so far (rendered now; nothing written or sent)")
    _common(report)
