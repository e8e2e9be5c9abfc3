"""What a doctor check is given and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from openclaw.config import Config

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``status`` is ok, warn or fail; ``fix`` says what to do."""

    status: str
    title: str
    detail: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Context:
    """The home, the config file and its parsed config (defaults when it is broken)."""

    home: str
    path: str | None
    config: Config
    environ: Mapping[str, str]
    timeout: float = 5.0
    config_ok: bool = True
    running: dict = field(default_factory=dict)


def render(findings: list[Finding]) -> str:
    """One line per finding, and the fix indented under it."""
    lines = []
    for f in findings:
        lines.append(f"{f.status:<4}  {f.title}" + (f": {f.detail}" if f.detail else ""))
        if f.fix and f.status != OK:
            lines.append(f"      fix: {f.fix}")
    return "\n".join(lines)
