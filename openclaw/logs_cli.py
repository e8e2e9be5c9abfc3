"""
``openclaw logs [-f] [--level L] [--tree]``: read the daemon's JSON log
(``<home>/logs/combined.log``) as console lines, or as eliot-tree's tree of
actions, without knowing where the file is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from typing import Any, Iterable, Iterator

from openclaw.config import default_home
from openclaw.eliotutil import LEVELS
from openclaw.logs import level_of, render

FOLLOW_POLL = 0.25  # seconds between looks at a followed file


def parse_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects among ``lines``; a torn or foreign line is skipped."""
    for line in lines:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            yield message


def at_least(messages: Iterable[dict[str, Any]], level: str) -> Iterator[dict[str, Any]]:
    """The messages at ``level`` or above."""
    threshold = LEVELS[level]
    return (m for m in messages if LEVELS[level_of(m)] >= threshold)


def _print_lines(messages: Iterable[dict[str, Any]]) -> None:
    for message in messages:
        sys.stdout.write(render(message, level_of(message)) + "\n")


def _print_tree(messages: Iterable[dict[str, Any]]) -> None:
    from eliottree import render_tasks, tasks_from_iterable

    render_tasks(sys.stdout.write, tasks_from_iterable(list(messages)), colorize=False, human_readable=True)


def cmd_logs(args: argparse.Namespace) -> int:
    home = os.path.abspath(os.path.expanduser(args.home or default_home()))
    path = os.path.join(home, "logs", "error.log" if args.errors else "combined.log")
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        print(f"openclaw: cannot read {path} ({e.strerror}); has the daemon run with --home {home}?", file=sys.stderr)
        return 1
    with f:
        recent = at_least(parse_lines(deque(f, maxlen=args.lines) if args.lines else f), args.level)
        (_print_tree if args.tree else _print_lines)(recent)
        sys.stdout.flush()
        while args.follow:
            line = f.readline()
            if not line:
                time.sleep(FOLLOW_POLL)
                continue
            _print_lines(at_least(parse_lines([line]), args.level))
            sys.stdout.flush()
    return 0


def add_logs_parser(sub: Any) -> None:
    parser = sub.add_parser("logs", help="print the daemon's log (combined.log) as lines or as a tree of actions")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    parser.add_argument("--level", choices=tuple(LEVELS), default="trace", help="only this level and above")
    parser.add_argument("--tree", action="store_true", help="render actions as a tree (eliot-tree)")
    parser.add_argument("--errors", action="store_true", help="read error.log instead")
    parser.add_argument("-n", "--lines", type=int, default=200, help="the last N records (0: all; default 200)")
    parser.add_argument("--home", help="the daemon's home (default: $OPENCLAW_HOME, else ~/.openclaw)")
    parser.set_defaults(func=cmd_logs)
