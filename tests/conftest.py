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


@pytest_twisted.async_yield_fixture(autouse=True)
async def stop_daemons_left_running() -> Any:
    """Every tree a test started (``tests.daemon.RunningDaemon``) is stopped, even when the test failed."""
    yield
    from tests.daemon import RUNNING

    for daemon in list(RUNNING):
        await daemon.stop()


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


def _not_json(value: Any) -> Any:
    """
    Strict where Eliot is lenient (it falls back to ``repr``): a field must
    be JSON as it stands, or the line in the log is a repr nobody can query.
    """
    raise TypeError(f"{type(value).__name__} is not JSON: {value!r:.80}")


def _declared_serializer(message: dict) -> Any:
    """
    The declared type's serializer for a message logged by its name as a
    plain string (``log("openclaw:...")``): it is checked all the same.
    """
    from eliot import ActionType

    from openclaw.eliotutil import load_declared

    name = message.get("message_type") or message.get("action_type")
    declared = load_declared().get(name)
    if declared is None:
        return None
    if isinstance(declared, ActionType):
        status = message.get("action_status")
        return {"started": declared._serializers.start, "succeeded": declared._serializers.success,
                "failed": declared._serializers.failure}.get(status)
    return declared._serializer if "message_type" in message else None


class ValidatingLogger:
    """
    Eliot's ``MemoryLogger`` (every message checked against its declared
    type as it is written, and for JSON) that also passes each message on to
    the logger it replaced, so the log destinations tests add still see it.
    """

    def __init__(self, forward: Any) -> None:
        from eliot import MemoryLogger

        self.memory = MemoryLogger(json_default=_not_json)
        self.forward = forward

    def write(self, dictionary: dict, serializer: Any = None) -> None:
        if serializer is None:
            serializer = _declared_serializer(dictionary)
        self.memory.write(dictionary, serializer)
        self.forward.write(dict(dictionary), serializer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)


@pytest.fixture(autouse=True)
def eliot_logger() -> Iterator[Any]:
    """
    Every in-process test runs under a validating Eliot logger (the model is
    Tahoe-LAFS's ``allmydata.test.eliotutil``): at teardown a message that is
    not JSON, or a declared type written with wrong or missing fields, fails
    the test, and so does a logged traceback unless the test flushed it
    (``eliot_logger.flush_tracebacks(ExceptionType)``).  Tests may read
    ``eliot_logger.messages``.
    """
    from eliot.testing import swap_logger

    logger = ValidatingLogger(None)
    logger.forward = swap_logger(logger)
    try:
        yield logger
    finally:
        swap_logger(logger.forward)
    logger.memory.validate()
    if logger.tracebackMessages:
        shown = "\n".join(f"{m.get('exception')}: {m.get('reason')}\n{m.get('traceback')}"
                          for m in logger.tracebackMessages)
        pytest.fail(f"unexpected Eliot tracebacks logged:\n{shown}", pytrace=False)


@pytest.fixture
def redis_server(tmp_path) -> Any:
    """A real redis-server (AOF on) of this test's own on a free port, killed in teardown."""
    from tests.process import RedisServer

    server = RedisServer(str(tmp_path))
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()
