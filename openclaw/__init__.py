"""openclaw: a proactive personal-assistant daemon on Twisted."""

__version__ = "0.1.0"
