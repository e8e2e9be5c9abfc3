"""The gateway's frame parser: every malformed case has its own code."""

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw.gateway import frames
from openclaw.gateway.frames import FrameError, parse_request
from openclaw.gateway.protocol import text_frame
from tests.strategies import frame_values

LIMIT = 1024


def error_of(payload: bytes, binary: bool = False) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_request(payload, binary, LIMIT)
    return info.value


@pytest.mark.parametrize(
    "payload, code, request_id",
    [
        (b"{not json", frames.INVALID_JSON, None),
        (b"\xff\xfe", frames.INVALID_JSON, None),
        (b"[1, 2]", frames.INVALID_FRAME, None),
        (b'"req"', frames.INVALID_FRAME, None),
        (b'{"id": "a", "method": "ping"}', frames.MISSING_FIELD, "a"),
        (b'{"type": "res", "id": "a", "method": "ping"}', frames.INVALID_FIELD, "a"),
        (b'{"type": "req", "method": "ping"}', frames.MISSING_FIELD, None),
        (b'{"type": "req", "id": "a"}', frames.MISSING_FIELD, "a"),
        (b'{"type": "req", "id": 7, "method": "ping"}', frames.INVALID_FIELD, None),
        (b'{"type": "req", "id": "", "method": "ping"}', frames.INVALID_FIELD, None),
        (b'{"type": "req", "id": "a", "method": 3}', frames.INVALID_FIELD, "a"),
        (b'{"type": "req", "id": "a", "method": ""}', frames.INVALID_FIELD, "a"),
        (b'{"type": "req", "id": "a", "method": "ping", "params": [1]}', frames.INVALID_FIELD, "a"),
        (b'{"type": "req", "id": "a", "method": "ping", "params": "x"}', frames.INVALID_FIELD, "a"),
    ],
)
def test_malformed_frames_get_precise_codes(payload: bytes, code: str, request_id: str | None) -> None:
    error = error_of(payload)
    assert (error.code, error.request_id) == (code, request_id)
    assert error.message


def test_binary_frames_are_refused() -> None:
    assert error_of(b'{"type":"req","id":"a","method":"ping"}', binary=True).code == frames.BINARY_NOT_SUPPORTED


def test_oversize_frames_are_refused_before_parsing() -> None:
    error = error_of(b" " * (LIMIT + 1))
    assert error.code == frames.FRAME_TOO_LARGE
    assert str(LIMIT) in error.message


def test_null_params_mean_none() -> None:
    request = parse_request(b'{"type":"req","id":"a","method":"ping","params":null}', False, LIMIT)
    assert request == frames.Request("a", "ping", {})


@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_either_parse_or_raise_frame_error(payload: bytes, binary: bool) -> None:
    try:
        request = parse_request(payload, binary, LIMIT)
    except FrameError as e:
        assert e.code in {
            frames.BINARY_NOT_SUPPORTED, frames.FRAME_TOO_LARGE, frames.INVALID_JSON,
            frames.INVALID_FRAME, frames.MISSING_FIELD, frames.INVALID_FIELD,
        }
    else:
        assert isinstance(request.id, str) and isinstance(request.params, dict)


@given(st.dictionaries(st.sampled_from(["type", "id", "method", "params", "extra"]), frame_values()))
def test_arbitrary_objects_either_parse_or_raise_frame_error(frame: dict) -> None:
    payload = orjson.dumps(frame)
    try:
        request = parse_request(payload, False, 10**6)
    except FrameError as e:
        if e.request_id is not None:
            assert e.request_id == frame["id"]
    else:
        assert frame["type"] == "req"
        assert (request.id, request.method) == (frame["id"], frame["method"])


@given(
    st.text(min_size=1, max_size=frames.MAX_ID_LENGTH),
    st.text(min_size=1, max_size=frames.MAX_METHOD_LENGTH),
    st.dictionaries(st.text(max_size=8), frame_values(), max_size=5),
)
def test_valid_requests_round_trip(request_id: str, method: str, params: dict) -> None:
    payload = orjson.dumps({"type": "req", "id": request_id, "method": method, "params": params})
    assert parse_request(payload, False, 10**6) == frames.Request(request_id, method, params)


@given(st.one_of(st.none(), st.text(min_size=1, max_size=10)), st.text(max_size=10), st.text(max_size=50))
def test_errors_encode_to_the_documented_shape(request_id, code, message) -> None:
    assert orjson.loads(frames.encode_error(request_id, code, message)) == {
        "type": "res", "id": request_id, "ok": False, "error": {"code": code, "message": message},
    }


@given(st.one_of(st.binary(max_size=300), st.integers(125, 70_000).map(lambda n: b"a" * n)))
def test_a_reply_frame_is_one_unmasked_final_text_frame_holding_the_payload(payload: bytes) -> None:
    frame = text_frame(payload)
    assert frame[0] == 0x81 and not frame[1] & 0x80  # FIN + text; servers do not mask
    short = frame[1] & 0x7F
    if short < 126:
        length, body = short, frame[2:]
    elif short == 126:
        length, body = int.from_bytes(frame[2:4], "big"), frame[4:]
        assert length >= 126  # the shortest form, as RFC 6455 5.2 requires
    else:
        length, body = int.from_bytes(frame[2:10], "big"), frame[10:]
        assert length >= 65536
    assert length == len(payload) and body == payload
