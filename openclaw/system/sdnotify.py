"""
systemd's notify protocol (``sd_notify(3)``), spoken by the daemon itself.

It is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET``; that is small enough to own rather than depend on
python-systemd, which needs libsystemd headers to install.
"""

import os
import re
import socket
from collections.abc import Mapping

from openclaw.eliotutil import log


class SDNotifier:
    """
    Sends notify datagrams to one socket.

    Sending never raises into the daemon: a service manager that went away
    must not take the daemon with it, so failures are logged at ``warn``.
    """

    def __init__(self, address: str) -> None:
        """
        :param address: a filesystem path, or an abstract-namespace name
            with its leading NUL (what ``from_environ`` makes of ``@name``).
        """
        self.address = address
        self._socket: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "SDNotifier | None":
        """
        The notifier systemd asked for, or ``None`` when not run by systemd
        with ``Type=notify`` (``NOTIFY_SOCKET`` unset or empty) or when the
        address is of a kind this module does not speak (e.g. ``vsock:``).
        """
        address = environ.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if address.startswith("@"):
            return cls("\0" + address[1:])
        if address.startswith("/"):
            return cls(address)
        log("openclaw:systemd:unsupported-socket", "warn", address=address)
        return None

    def send(self, **pairs: str | int) -> bool:
        """
        Send ``pairs`` as one datagram, in the order given.

        :return: whether the datagram was sent.
        """
        data = format_message(pairs)
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # A full receive queue must not block the reactor thread.
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto(data, self.address)
        except OSError as e:
            log(
                "openclaw:systemd:notify-failed",
                "warn",
                keys=list(pairs),
                error=f"{type(e).__name__}: {e}",
            )
            return False
        log("openclaw:systemd:notify", "debug", keys=list(pairs))
        return True

    def ready(self) -> bool:
        """Tell systemd start-up is finished (``READY=1``)."""
        return self.send(READY=1)

    def stopping(self) -> bool:
        """Tell systemd shutdown has begun (``STOPPING=1``)."""
        return self.send(STOPPING=1)

    def watchdog(self) -> bool:
        """Reset systemd's watchdog timer (``WATCHDOG=1``)."""
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self.send(STATUS=text)

    def close(self) -> None:
        """Release the socket; a later send opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def one_line(value: str | int) -> str:
    """
    ``value`` as text with line breaks turned into spaces: a newline inside a
    value would start a new ``KEY=VALUE`` assignment in the datagram.
    """
    return " ".join(str(value).splitlines())


_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
_DECIMAL = re.compile(r"[0-9]+")


def format_message(pairs: Mapping[str, str | int]) -> bytes:
    """The datagram for ``pairs``: ``KEY=VALUE\\n`` lines, UTF-8."""
    for key in pairs:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a notify key: {key!r}")
    return "".join(f"{key}={one_line(value)}\n" for key, value in pairs.items()).encode("utf-8")


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """
    How often to send ``WATCHDOG=1``, in seconds: half of ``WATCHDOG_USEC``,
    as ``sd_watchdog_enabled(3)`` advises, so one late ping is not fatal.

    ``None`` when no watchdog is asked for, when ``WATCHDOG_PID`` names
    another process (the variables leaked to us from a parent), or when the
    values are malformed (logged at ``warn``).

    :param pid: our process id; ``os.getpid()`` when omitted.
    """
    usec_text = environ.get("WATCHDOG_USEC", "")
    if not usec_text:
        return None
    pid_text = environ.get("WATCHDOG_PID", "")
    if pid_text:
        if not _DECIMAL.fullmatch(pid_text):
            log("openclaw:systemd:bad-watchdog-env", "warn", name="WATCHDOG_PID", value=pid_text)
            return None
        if int(pid_text) != (os.getpid() if pid is None else pid):
            return None
    if not _DECIMAL.fullmatch(usec_text) or int(usec_text) == 0:
        log("openclaw:systemd:bad-watchdog-env", "warn", name="WATCHDOG_USEC", value=usec_text)
        return None
    return int(usec_text) / 2_000_000
