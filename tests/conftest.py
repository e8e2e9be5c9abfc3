import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def path_socket() -> Iterator[tuple[socket.socket, str]]:
    """A non-blocking datagram socket bound to a path short enough for sun_path."""
    directory = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()
    shutil.rmtree(directory)


@pytest_twisted.async_yield_fixture
async def store(tmp_path) -> Any:
    """A started SQLite store in the test's directory, stopped afterwards."""
    from twisted.internet import reactor

    from openclaw.store.sqlite import SQLiteStore

    s = SQLiteStore(reactor, str(tmp_path / "openclaw.sqlite3"))
    s.startService()
    yield s
    await s.stopService()


@pytest_twisted.async_yield_fixture
async def llm() -> Any:
    """A started fake model API (``tests.llm_servers.FakeLLM``), stopped after the test."""
    from tests.llm_servers import FakeLLM

    server = FakeLLM().start()
    yield server
    await server.stop()
