"""
The gateway's wire format, without any I/O.

Requests ``{"type":"req","id":str,"method":str,"params":{...}}``; responses
``{"type":"res","id":...,"ok":true,"payload":{...}}`` or ``"ok":false`` with
``"error":{"code","message"}``; events ``{"type":"event","event","payload"}``.
Every way a frame can be wrong maps to one precise error code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_ID_LENGTH = 128
MAX_METHOD_LENGTH = 64

# The codes a client can receive; docs/gateway.md explains each.
BINARY_NOT_SUPPORTED = "binary_not_supported"
FRAME_TOO_LARGE = "frame_too_large"
INVALID_JSON = "invalid_json"
INVALID_FRAME = "invalid_frame"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNAUTHORIZED = "unauthorized"
UNKNOWN_METHOD = "unknown_method"
DUPLICATE_ID = "duplicate_id"
SHUTTING_DOWN = "shutting_down"
BUSY = "busy"
STORE_UNAVAILABLE = "store_unavailable"
RATE_LIMITED = "rate_limited"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    method: str
    params: dict


class FrameError(Exception):
    """A frame that cannot be served; carries the request id when known."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def parse_request(payload: bytes, is_binary: bool, max_bytes: int) -> Request:
    """
    Parse one frame into a Request.

    :raises FrameError: with the most precise code for what is wrong.
    """
    if is_binary:
        raise FrameError(BINARY_NOT_SUPPORTED, "binary frames are not supported; send JSON text frames")
    if len(payload) > max_bytes:
        raise FrameError(FRAME_TOO_LARGE, f"frame of {len(payload)} bytes exceeds the limit of {max_bytes}")
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise FrameError(INVALID_JSON, f"frame is not valid JSON: {e}") from None
    if not isinstance(frame, dict):
        raise FrameError(INVALID_FRAME, f"frame must be a JSON object, got {type(frame).__name__}")
    request_id = frame.get("id")
    known_id = request_id if _valid_id(request_id) else None
    if "type" not in frame:
        raise FrameError(MISSING_FIELD, "field 'type' is required", known_id)
    if frame["type"] != "req":
        raise FrameError(INVALID_FIELD, "field 'type' must be \"req\"", known_id)
    for name in ("id", "method"):
        if name not in frame:
            raise FrameError(MISSING_FIELD, f"field '{name}' is required", known_id)
    if known_id is None:
        raise FrameError(INVALID_FIELD, f"field 'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
    method = frame["method"]
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_LENGTH:
        raise FrameError(INVALID_FIELD, f"field 'method' must be a string of 1 to {MAX_METHOD_LENGTH} characters", known_id)
    params = frame.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise FrameError(INVALID_FIELD, "field 'params' must be an object", known_id)
    return Request(known_id, method, params)


def peek_id(payload: bytes) -> str | None:
    """The request id of a frame, if it has a usable one (for refusals)."""
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(frame, dict) and _valid_id(frame.get("id")):
        return frame["id"]
    return None


def encode_response(request_id: str, payload: Any) -> bytes:
    return orjson.dumps({"type": "res", "id": request_id, "ok": True, "payload": payload})


def encode_error(request_id: str | None, code: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "res", "id": request_id, "ok": False, "error": {"code": code, "message": message}}
    )


def encode_event(event: str, payload: Any) -> bytes:
    return orjson.dumps({"type": "event", "event": event, "payload": payload})
