"""The shared HTTP client (openclaw/http.py) against a real server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from openclaw import metrics
from openclaw.http import BodyTooLarge, HTTPClient, HTTPTimeout, RateLimit, Response
from tests.llm_servers import RecordingSleep
from tests.telegram_server import one_request_per_connection


class Server(Resource):
    """Answers every request with the next scripted ``(status, headers, body)``, else 200 ``{"n": <count>}``."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.script: list[tuple[int, dict[str, str], bytes] | None] = []
        self.close_after_response = False
        self.count = 0
        self.stall = False
        self.port: Any = None

    def render(self, request: Any) -> Any:
        if self.close_after_response and not one_request_per_connection(request):
            return NOT_DONE_YET
        self.count += 1
        if self.stall:
            return NOT_DONE_YET
        status, headers, body = (self.script.pop(0) if self.script else None) or (200, {}, b'{"n": %d}' % self.count)
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/x"


@pytest_twisted.async_yield_fixture
async def server():
    resource = Server()
    site = Site(resource)
    site.noisy = False
    resource.port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield resource
    await resource.port.stopListening()


@pytest_twisted.async_yield_fixture
async def client():
    sleeps = RecordingSleep()
    made = HTTPClient(reactor, "test", timeout=5.0, sleep=sleeps)
    made.sleeps = sleeps
    yield made
    await made.close()


def retried() -> float:
    return metrics.REGISTRY.get_sample_value("openclaw_http_fresh_retries_total", {"client": "test"}) or 0.0


@pytest_twisted.ensureDeferred
async def test_json_in_and_out_with_lower_case_headers(server, client) -> None:
    first = await client.request("POST", server.url, json={"a": 1})
    second = await client.request("POST", server.url, json={"a": 2})
    assert (first.status, first.json(), second.json()) == (200, {"n": 1}, {"n": 2})
    assert first.headers["content-type"].startswith("text/html")  # lower-case names


@pytest_twisted.ensureDeferred
async def test_an_idempotent_request_on_a_connection_the_server_closed_is_sent_again_on_a_fresh_one(
        server, client) -> None:
    server.close_after_response = True
    before = retried()
    answers = [await client.request("POST", server.url, json={}, idempotent=True) for _ in range(6)]
    assert [a.json()["n"] for a in answers] == [1, 2, 3, 4, 5, 6]
    assert retried() - before >= 3  # every reuse of a pooled connection failed and went again


@pytest_twisted.ensureDeferred
async def test_a_post_that_is_not_idempotent_is_not_sent_twice(server, client) -> None:
    server.close_after_response = True
    await client.request("POST", server.url, json={})
    with pytest.raises(ResponseNeverReceived):
        await client.request("POST", server.url, json={})
    assert server.count == 1


@pytest_twisted.ensureDeferred
async def test_no_answer_is_a_timeout_and_a_cancel_is_a_cancel(server, client) -> None:
    server.stall = True
    with pytest.raises(HTTPTimeout, match="no answer within 0.2s"):
        await client.request("GET", server.url, timeout=0.2)
    d = client.request("GET", server.url)
    reactor.callLater(0.05, d.cancel)
    with pytest.raises(CancelledError):
        await d
    server.stall = False
    assert (await client.request("GET", server.url)).status == 200  # and a normal request still works


@pytest_twisted.ensureDeferred
async def test_a_body_over_the_cap_fails_or_is_cut_when_asked(server, client) -> None:
    server.script = [(200, {}, b"x" * 100_000), (200, {}, b"y" * 100_000), (200, {}, b"z" * 10)]
    with pytest.raises(BodyTooLarge):
        await client.request("GET", server.url, max_body=1000)
    cut = await client.request("GET", server.url, max_body=1000, truncate=True)
    assert cut.body == b"y" * 1000 and cut.truncated
    whole = await client.request("GET", server.url, max_body=10, truncate=True)
    assert whole.body == b"z" * 10 and not whole.truncated


@pytest_twisted.ensureDeferred
async def test_a_429_is_waited_out_as_retry_after_says_up_to_the_limits(server, client) -> None:
    limited = (429, {"Retry-After": "3"}, b"slow down")
    server.script = [limited, limited, None]
    answer = await client.request("GET", server.url, rate_limit=RateLimit(retries=2, max_wait=10))
    assert answer.status == 200 and client.sleeps.delays == [3.0, 3.0]
    server.script = [(429, {"Retry-After": "600"}, b"")]
    answer = await client.request("GET", server.url, rate_limit=RateLimit(retries=2, max_wait=10))
    assert answer.status == 429 and answer.retry_after == 600.0 and client.sleeps.delays == [3.0, 3.0]


def response(status: int = 429, headers: dict[str, str] | None = None) -> Response:
    return Response(status, headers or {}, b"")


@given(st.integers(0, 5), st.integers(0, 5), st.one_of(st.none(), st.floats(0, 100)), st.floats(0, 100))
def test_a_rate_limit_waits_only_for_a_429_within_its_retries_and_max_wait(
        retries: int, attempt: int, asked: float | None, max_wait: float) -> None:
    limit = RateLimit(retries=retries, max_wait=max_wait, default=1.0)
    found = limit.wait(response(headers={} if asked is None else {"retry-after": repr(asked)}), attempt)
    wanted = 1.0 if asked is None else asked
    assert found == (wanted if attempt < retries and wanted <= max_wait else None)
    assert limit.wait(response(503), 0) is None


def test_a_json_body_nested_too_deep_is_not_json() -> None:
    with pytest.raises(ValueError):
        Response(200, {}, b"[" * 5000 + b"]" * 5000).json()
