"""
A local stand-in for Meta's Graph API as the WhatsApp Cloud API uses it, and
builders of the webhook notifications Meta POSTs.

``GraphServer`` is a real HTTP server on 127.0.0.1 (an ephemeral port) that
checks the Bearer token like Meta (401 with error code 190 otherwise),
answers ``GET /<phone_number_id>`` with the number's profile and
``POST /<phone_number_id>/messages`` with a ``wamid``, and records every
request.  ``script`` queues failures for the next POSTs (429s, rate-limit
codes).  It can stop and start again on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.waiting import until  # noqa: F401 (the tests import it from here)


@dataclass
class Canned:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def graph_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Canned:
    """An error as the Graph API spells it."""
    return Canned(status, {"error": {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code,
                                     "error_data": {"messaging_product": "whatsapp", "details": message},
                                     "fbtrace_id": "AbCdEf"}}, headers or {})


class GraphServer(Resource):
    isLeaf = True

    def __init__(self, token: str, phone_number_id: str) -> None:
        super().__init__()
        self.token = token
        self.phone_number_id = phone_number_id
        self.requests: list[Received] = []
        self.sent: list[dict] = []
        self.script: list[Canned] = []
        self._port: Any = None
        self._number = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_number}/v21.0"

    def start(self, port: int = 0) -> GraphServer:
        self._port = reactor.listenTCP(port, Site(self), interface="127.0.0.1")
        self.port_number = self._port.getHost().port
        return self

    def stop(self) -> Deferred:
        return self._port.stopListening()

    def count(self, method: str) -> int:
        return sum(1 for r in self.requests if r.method == method)

    def _record(self, request: Any) -> Received:
        raw = request.content.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.decode().lower(): v[-1].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        received = Received(request.method.decode(), request.path.decode(), headers, body)
        self.requests.append(received)
        return received

    def _reply(self, request: Any, canned: Canned) -> bytes:
        request.setResponseCode(canned.status)
        request.setHeader("content-type", "application/json")
        for name, value in canned.headers.items():
            request.setHeader(name, value)
        return json.dumps(canned.body).encode()

    def _authorized(self, received: Received) -> bool:
        return received.headers.get("authorization") == f"Bearer {self.token}"

    def render_GET(self, request: Any) -> bytes:
        received = self._record(request)
        if not self._authorized(received):
            return self._reply(request, graph_error(401, 190, "Error validating access token: Session has expired"))
        if received.path != f"/v21.0/{self.phone_number_id}":
            return self._reply(request, graph_error(400, 100, "Unsupported get request"))
        return self._reply(request, Canned(200, {
            "verified_name": "Test Business", "display_phone_number": "+1 555-000-0000",
            "id": self.phone_number_id, "quality_rating": "GREEN"}))

    def render_POST(self, request: Any) -> bytes:
        received = self._record(request)
        if not self._authorized(received):
            return self._reply(request, graph_error(401, 190, "Error validating access token"))
        if received.path != f"/v21.0/{self.phone_number_id}/messages":
            return self._reply(request, graph_error(400, 100, "Unsupported post request"))
        if self.script:
            return self._reply(request, self.script.pop(0))
        body = received.body
        if not (isinstance(body, dict) and body.get("messaging_product") == "whatsapp" and body.get("type") == "text"
                and isinstance(body.get("to"), str) and isinstance(body.get("text"), dict)
                and 0 < len(body["text"].get("body", "")) <= 4096):
            return self._reply(request, graph_error(400, 100, "Invalid parameter"))
        self.sent.append(body)
        self._number += 1
        return self._reply(request, Canned(200, {
            "messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": f"wamid.OUT{self._number}"}]}))


# What Meta POSTs to the webhook.

def sign(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def notification(value: dict, phone_number_id: str) -> dict:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id}, **value}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA_ID", "changes": [{"value": value, "field": "messages"}]}]}


def text_message(phone_number_id: str, wa_id: str, wamid: str, text: str, name: str = "Ann") -> dict:
    return notification({
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}],
    }, phone_number_id)


def statuses(phone_number_id: str, *items: tuple[str, str, str]) -> dict:
    """``(wamid, status, recipient)`` each; failed ones carry Meta's error object."""
    return notification({"statuses": [
        {"id": wamid, "status": status, "timestamp": "1700000001", "recipient_id": recipient,
         **({"errors": [{"code": 131047, "title": "Re-engagement message"}]} if status == "failed" else {})}
        for wamid, status, recipient in items]}, phone_number_id)

