"""
``make run`` on a terminal, stopped with Ctrl-C, exits 0 (README: "Stop it
with Ctrl-C ... exit 0"): the real Makefile, the real twistd, a pty whose
line discipline turns ``^C`` into SIGINT for the foreground process group.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.process import free_port

ROOT = Path(__file__).resolve().parent.parent
#: A ceiling, not a wait: twistd starting and draining on a loaded machine.
CEILING = 90.0



def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def test_ctrl_c_on_make_run_exits_0(tmp_path: Path) -> None:
    web = free_port()
    args = f"--home {tmp_path / 'home'} --gateway tcp:0:interface=127.0.0.1 --web tcp:{web}:interface=127.0.0.1"
    pid, terminal = pty.fork()
    if pid == 0:  # the child: session leader on the pty, like a shell's foreground job
        try:
            # This test's virtualenv, taken as built (-o): the test runs the recipe, not pip.
            venv = os.path.dirname(os.path.dirname(sys.executable))
            os.execvp("make", ["make", "-C", str(ROOT), "--no-print-directory", f"VENV={venv}",
                               "-o", f"{venv}/.installed-stamp", "run", f"ARGS={args}"])
        finally:
            os._exit(127)
    output = b""
    status = None
    interrupted = False
    deadline = time.monotonic() + CEILING
    try:
        while status is None and time.monotonic() < deadline:
            readable, _, _ = select.select([terminal], [], [], 0.1)
            if readable:
                try:
                    output += os.read(terminal, 65536)
                except OSError:  # EIO: every process on the pty has gone
                    pass
            if not interrupted and ready(web):
                os.write(terminal, b"\x03")  # Ctrl-C
                interrupted = True
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(wait_status)
    finally:
        if status is None:
            # make's group, and twistd's own one if it holds the terminal.
            for group in {pid, os.tcgetpgrp(terminal)}:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.waitpid(pid, 0)
        os.close(terminal)
    text = output.decode(errors="replace")
    assert interrupted, text[-2000:]
    assert status == 0, text[-2000:]
    assert "openclaw:service:stop" in text and "Interrupt" not in text
