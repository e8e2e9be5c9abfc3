"""
One daemon per home: an exclusive ``flock`` on ``<home>/daemon.lock``.

Taken before anything is bound or opened, held until the process exits (the
kernel drops it even after ``kill -9``, so there is never a stale lock to
clean up).  The file holds the holder's PID so a refused second daemon can
say who holds it.  CLI commands never take it.
"""

from __future__ import annotations

import errno
import fcntl
import os

from openclaw.errors import StartupError

LOCK_NAME = "daemon.lock"

#: Exit status of a daemon refused because another one holds its home
#: (EX_CANTCREAT).  The shipped systemd unit lists it beside 78 in
#: ``RestartPreventExitStatus=``: restarting cannot free the lock.
EX_LOCKED = 73


class HomeLocked(StartupError):
    """Another daemon holds this home; ``str()`` is the one line to print."""


def lock_path(home: str) -> str:
    return os.path.join(home, LOCK_NAME)


def acquire(home: str) -> int:
    """
    Take the home's lock; :return: the file descriptor that holds it (keep it
    open).  :raise HomeLocked: naming the holder's PID.
    """
    path = lock_path(home)
    os.makedirs(home, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _read_pid(fd)
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise HomeLocked(f"cannot lock {path}: {e.strerror}") from None
        who = f"pid {holder}" if holder else "another process"
        raise HomeLocked(f"another openclaw daemon ({who}) is running on {os.path.dirname(path)}; "
                         f"stop it first, or give this one its own --home") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def holder(home: str) -> int | None:
    """
    The PID recorded by the daemon that last took ``home``'s lock if that
    process is alive, else ``None``.  Reads only: CLI commands never lock.
    """
    try:
        fd = os.open(lock_path(home), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pid = _read_pid(fd)
    finally:
        os.close(fd)
    return pid if pid and alive(pid) else None


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours to signal or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
