"""Errors that stop the daemon's start with one readable line."""


class StartupError(Exception):
    """The daemon cannot start; ``str()`` is the line an operator reads."""
