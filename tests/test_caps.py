"""The pure limit logic: connection caps, the request-rate bucket, the range-checked parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw.config import ConfigError, build_config
from openclaw.limits import TOO_MANY_CONNECTIONS, TOO_MANY_PER_ADDRESS, ConnectionCaps, TokenBucket
from openclaw.config.parsing import origins

addresses = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"])


@given(st.integers(1, 6), st.integers(1, 6), st.lists(st.tuples(st.booleans(), addresses), max_size=60))
def test_caps_never_admit_past_either_bound_and_refuse_only_at_one(total, per_address, steps) -> None:
    caps = ConnectionCaps(total, per_address)
    admitted: list[str] = []
    for opening, address in steps:
        if opening or not admitted:
            reason = caps.admit(address)
            mine = admitted.count(address)
            if reason is None:
                assert len(admitted) < total and mine < per_address
                admitted.append(address)
            else:
                assert reason == (TOO_MANY_CONNECTIONS if len(admitted) >= total else TOO_MANY_PER_ADDRESS)
                assert len(admitted) >= total or mine >= per_address
        else:
            caps.release(admitted.pop(0))
        assert caps.open == len(admitted)


@given(st.floats(0.5, 1000), st.integers(1, 100), st.lists(st.floats(0, 5), min_size=1, max_size=200))
def test_the_bucket_grants_at_most_burst_plus_rate_times_elapsed(rate, burst, gaps) -> None:
    now = 100.0
    bucket = TokenBucket(rate, burst, now)
    granted = 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now)
    assert granted <= burst + rate * (now - 100.0) + 1e-6


def test_a_full_bucket_refuses_then_refills_with_time() -> None:
    bucket = TokenBucket(2, 2, 0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.take(10.0) and bucket.take(10.0) and not bucket.take(10.0)  # never more than the burst


@pytest.mark.parametrize("key, value", [
    ("gateway.max_connections", 0), ("gateway.max_connections", 70000),
    ("gateway.send_high_water", "1KiB"), ("gateway.send_hard_limit", "1GiB"),
    ("gateway.max_requests_per_second", -1), ("web.request_timeout", "0.1s"),
    ("web.request_timeout", "1h"), ("web.max_webhook_body", "65MiB"),
    ("gateway.allowed_origins", ["console.example"]), ("gateway.allowed_origins", ["https://x/path"]),
])
def test_limits_out_of_range_are_config_errors_naming_the_key(key, value) -> None:
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config({section: {name: value}})


@given(st.lists(st.from_regex(r"https?://[a-z0-9]{1,10}(\.[a-z]{2,5})?(:[0-9]{1,5})?", fullmatch=True), max_size=4))
def test_origins_round_trip_from_the_environment_form(values) -> None:
    assert origins(",".join(values)) == origins(values) == tuple(v.lower() for v in values)
