"""
Rendering the systemd unit and the launchd agent from their templates.

Pure: text in, text out.  The templates ship inside the package
(``openclaw/system/templates/``, package data) so an installed openclaw can
render them; ``etc/`` holds a copy of the launchd template and a rendered
system unit (checked by tests/test_units.py) for people reading the source.
"""

import os
import plistlib
import re
from importlib import resources
from string import Template
from typing import Any

SYSTEMD_TEMPLATE = "openclaw.service"
LAUNCHD_TEMPLATE = "com.openclaw.gateway.plist"


def read_template(name: str) -> str:
    """The text of one template, from the installed package or a checkout."""
    return resources.files("openclaw.system").joinpath("templates", name).read_text("utf-8")


def twistd_path(python: str) -> str:
    """
    The twistd script installed next to ``python``.

    Not ``realpath(python)``: a virtualenv's interpreter is a symlink out of
    the virtualenv, and twistd lives in the virtualenv's ``bin``.
    """
    return os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(python)), "twistd"))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NEEDS_QUOTES = re.compile(r"""[\s"'\\;]""")
# systemd's valid_user_group_name(), strict form.
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\$?")


def systemd_quote(value: str, exec_line: bool = False) -> str:
    """
    ``value`` as one word of a systemd unit setting.

    Doubles ``%`` (specifiers) everywhere and ``$`` (variable expansion) in
    ``Exec*=`` lines, and double-quotes the word, with C escapes for ``\\``
    and ``"``, when it would otherwise split or unescape.  Control
    characters are refused: no sane path has them.
    """
    if _CONTROL.search(value):
        raise ValueError(f"control character in {value!r}")
    value = value.replace("%", "%%")
    if exec_line:
        value = value.replace("$", "$$")
    if value and not _NEEDS_QUOTES.search(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _account(value: str | None) -> str | None:
    if value is not None and not _ACCOUNT.fullmatch(value):
        raise ValueError(f"not a valid user or group name: {value!r}")
    return value


def _absolute(path: str) -> str:
    # Neither systemd nor launchd expands "~" or resolves relative paths.
    if not os.path.isabs(path):
        raise ValueError(f"not an absolute path: {path!r}")
    return path


def render_template(template: str, values: dict[str, str | None], scope: str) -> str:
    """
    Fill ``template`` for ``scope`` (``system`` or ``user``).

    Drops ``##`` note lines, keeps ``#<scope># `` lines without their marker
    and drops those for the other scope, and drops any line with a
    placeholder whose value is ``None``.
    """
    lines = []
    for line in template.splitlines():
        if line.startswith("##"):
            continue
        marker = re.match(r"#(system|user)# ", line)
        if marker:
            if marker.group(1) != scope:
                continue
            line = line[marker.end():]
        names = Template(line).get_identifiers()
        if any(values[name] is None for name in names):
            continue
        lines.append(Template(line).substitute({name: values[name] for name in names}))
    return "\n".join(lines) + "\n"


def render_systemd(python: str, home: str, user: str | None, group: str | None, system: bool) -> str:
    """
    The ``openclaw.service`` unit running openclaw from ``python``'s
    environment with ``home``; ``user``/``group`` are used only when
    ``system`` (a user unit always runs as its user).
    """
    twistd = _absolute(twistd_path(python))
    home = _absolute(home)
    values: dict[str, str | None] = {
        "twistd": systemd_quote(twistd, exec_line=True),
        "home": systemd_quote(home, exec_line=True),
        "home_env": systemd_quote(f"OPENCLAW_HOME={home}"),
        "user": _account(user),
        "group": _account(group),
    }
    return render_template(read_template(SYSTEMD_TEMPLATE), values, "system" if system else "user")


def _substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return Template(value).substitute(values)
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    return value


def render_launchd(python: str, home: str) -> str:
    """
    The ``com.openclaw.gateway`` launch agent running openclaw from
    ``python``'s environment with ``home``.

    The template is parsed and re-serialised with plistlib, so values are
    XML-escaped by the library rather than by hand.
    """
    values = {"twistd": _absolute(twistd_path(python)), "home": _absolute(home)}
    for name, value in values.items():
        if _CONTROL.search(value):
            raise ValueError(f"control character in {name} {value!r}")
    template = plistlib.loads(read_template(LAUNCHD_TEMPLATE).encode("utf-8"))
    return plistlib.dumps(_substitute(template, values), sort_keys=False).decode("utf-8")
