"""
Subcommands that ask the running daemon one thing over the gateway and print
the answer: ``pairing``, ``checks``, ``heartbeat``, ``report``.

Each is a (method, params) pair and a renderer; the daemon does the work,
so the CLI never opens the store itself (SQLite or Redis alike).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any, Callable

from twisted.internet.defer import Deferred

from openclaw.chat_cli import _react, _target, cli_client_id
from openclaw.client import GatewayClient


def call(args: argparse.Namespace, method: str, params: dict) -> tuple[Any, str | None]:
    """Call ``method`` on the daemon's gateway; :return: ``(payload, error)``."""
    target = _target(args)
    if target is None:
        return None, "no gateway token"
    url, token = target
    outcome: dict[str, Any] = {}

    def run(reactor: Any) -> Deferred:
        client = GatewayClient(url, token, lambda name, payload: None, client=cli_client_id())
        d = client.connect(reactor)
        d.addCallback(lambda _: client.request(method, params))
        d.addTimeout(args.timeout, reactor)
        d.addCallback(lambda payload: outcome.update(payload=payload))
        d.addErrback(lambda f: outcome.update(error=f.getErrorMessage() or type(f.value).__name__))
        d.addBoth(lambda _: client.close() if client._protocol is not None else None)
        return d

    _react(run)
    return outcome.get("payload"), outcome.get("error")


def _when(value: Any) -> str:
    return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M") if isinstance(value, (int, float)) else str(value)


def render_pairing(payload: dict) -> str:
    lines = ["Waiting for approval:" if payload["pending"] else "No pairing requests are waiting."]
    for p in payload["pending"]:
        lines.append(f"  {p['code']}  {p['connector']}:{p['sender_id']}  {p.get('sender_name') or ''}"
                     f"  (expires {_when(p['expires'])})")
    lines.append("Approved by pairing:" if payload["approved"] else "Nobody is approved by pairing yet.")
    lines += [f"  {a['sender']}  {a.get('sender_name') or ''}" for a in payload["approved"]]
    return "\n".join(lines)


def _method(args: argparse.Namespace) -> tuple[str, dict, Callable[[Any], str]]:
    """The gateway method, its params and how to print the answer, for ``args``."""
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
    method, params, render = _method(args)
    payload, error = call(args, method, params)
    if error is not None:
        print(f"openclaw: {error}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2) if args.json else render(payload))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", help="ws://host:port/ (default: $OPENCLAW_GATEWAY_URL, else the home's config)")
    parser.add_argument("--home", help="the daemon's home, for its token (default: $OPENCLAW_HOME, else ~/.openclaw)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the daemon")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.set_defaults(func=cmd_control)


def add_control_parsers(sub: Any) -> None:
    """The subcommands that talk to the running daemon through its gateway."""
    pairing = sub.add_parser("pairing", help="list, approve or revoke chat senders paired by code")
    pairing.add_argument("action", choices=("list", "approve", "revoke"))
    pairing.add_argument("arg", nargs="?", help="approve: the 6-digit code; revoke: channel:sender-id")
    _common(pairing)
