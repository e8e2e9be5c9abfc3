"""``twistd openclaw`` as a child process, for tests that need a real one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
OPENCLAW = os.path.join(os.path.dirname(sys.executable), "openclaw")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any openclaw or systemd settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.pop("LOG_LEVEL", None)
    env.update(extra)
    return env


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(30)

    def until(self, wanted: str) -> list[str]:
        """Every line received up to and including the datagram containing ``wanted``."""
        lines: list[str] = []
        while True:
            data = self.sock.recv(4096).decode()
            lines.extend(data.splitlines())
            if wanted in data.splitlines():
                return lines

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


class DaemonProcess:
    """
    A daemon on fresh ephemeral ports; ``start()`` returns once it sent
    READY=1 on its notify socket (no polling, no sleeping).
    """

    def __init__(self, tmp_path: os.PathLike, home: str, *args: str, **env: str) -> None:
        self.tmp_path = str(tmp_path)
        self.home = home
        self.args = args
        self.env = env
        self.process: subprocess.Popen | None = None
        self.notify: NotifySocket | None = None
        self.starts = 0

    def start(self) -> list[str]:
        self.starts += 1
        self.web, self.gateway = free_port(), free_port()
        self.notify = NotifySocket(os.path.join(self.tmp_path, f"notify-{self.starts}.sock"))
        env = clean_env(NOTIFY_SOCKET=self.notify.path, **self.env)
        # A file, not a pipe: nobody reads a pipe while the test runs, and a
        # daemon that fills one blocks in its console logger.
        self.output_path = os.path.join(self.tmp_path, f"output-{self.starts}.log")
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "openclaw", "--home", self.home, *self.args,
                 "--web", f"tcp:{self.web}:interface=127.0.0.1", "--gateway", f"tcp:{self.gateway}:interface=127.0.0.1"],
                stdout=output, stderr=subprocess.STDOUT, env=env, cwd="/",
            )
        return self.notify.until("READY=1")

    def output(self) -> bytes:
        """Everything the current run printed so far."""
        with open(self.output_path, "rb") as f:
            return f.read()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway}/"

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.notify.close()

    def stop(self) -> tuple[int, bytes]:
        """SIGTERM and wait: the exit status and everything it printed."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.notify.close()
        return self.process.returncode, self.output()

    def ensure_dead(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class HomeDaemon:
    """``twistd openclaw --home H`` and nothing else: everything comes from ``H/openclaw.yaml``."""

    def __init__(self, tmp_path, home: str, **env: str) -> None:
        self.tmp_path, self.home, self.env = str(tmp_path), home, env
        self.process: subprocess.Popen | None = None
        self.notify: NotifySocket | None = None
        self.runs = 0

    def start(self, wait: str | None = "READY=1") -> list[str]:
        self.runs += 1
        self.notify = NotifySocket(os.path.join(self.tmp_path, f"notify-{id(self)}-{self.runs}.sock"))
        self.output_path = os.path.join(self.tmp_path, f"output-{id(self)}-{self.runs}.log")
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "openclaw", "--home", self.home], stdout=output,
                stderr=subprocess.STDOUT, env=clean_env(NOTIFY_SOCKET=self.notify.path, **self.env), cwd="/")
        return self.notify.until(wait) if wait else []

    def output(self) -> str:
        with open(self.output_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def running(self) -> dict:
        with open(os.path.join(self.home, "daemon.json"), encoding="utf-8") as f:
            return json.load(f)

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(self.running()["web"] + "health", timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(self.running()["web"] + "metrics", timeout=10) as response:
            return response.read().decode()

    @property
    def gateway_port(self) -> int:
        return int(self.running()["gateway"].rsplit(":", 1)[1].rstrip("/"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def exited(self) -> bool:
        return self.process.poll() is not None

    def ensure_dead(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # a stopped (SIGSTOP) process dies of SIGKILL too
            self.process.wait()
        if self.notify is not None and os.path.exists(self.notify.path):
            self.notify.close()


class RedisServer:
    """A real redis-server on a free port with AOF on, killable and restartable on the same port."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):  # it answers within milliseconds; a ceiling, not a wait
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                return
        raise AssertionError("redis-server did not start")

    def cli(self, *args: str) -> str:
        """One ``redis-cli --raw`` command's output."""
        return subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
