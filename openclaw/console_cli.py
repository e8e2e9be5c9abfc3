"""
``openclaw console``: print a one-time link to the web console.  The daemon
makes the code (it works once, for a minute); the page trades it for the
gateway token and keeps that in the tab's session storage only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from openclaw.control_cli import _common, call


def cmd_console(args: argparse.Namespace) -> int:
    payload, error = call(args, "console.link", {})
    if error is not None:
        if error:
            print(f"openclaw: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(payload["url"])
        print(f"(works once, within {payload['expires_in']:.0f}s; over SSH, forward the web and gateway ports first: "
              "see docs/console.md)", file=sys.stderr)
    return 0


def add_console_parser(sub: Any) -> None:
    console = sub.add_parser("console", help="print a one-time link that opens the web console")
    _common(console, timeout=10.0)
    console.set_defaults(func=cmd_console)
