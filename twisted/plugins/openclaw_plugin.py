"""
twistd plugin: ``twistd openclaw`` builds the daemon from ``openclaw.tap``.

No ``__init__.py`` lives beside this file: ``twisted/plugins`` is Twisted's
plugin namespace, searched on every ``sys.path`` entry.
"""

from twisted.application.service import ServiceMaker

openclaw = ServiceMaker(
    "openclaw",
    "openclaw.tap",
    "openclaw: a proactive personal-assistant daemon",
    "openclaw",
)
