"""The benchmarks hand their load generator values that may look like options."""

import argparse

from hypothesis import given
from hypothesis import strategies as st

from bench.gateway import arguments, client_args


@given(st.text(alphabet="-_abcdefXYZ0123456789", min_size=1, max_size=64))
def test_a_token_reaches_the_load_generator_whatever_it_starts_with(token: str) -> None:
    outer = argparse.Namespace(warmup=1.0, duration=5.0, client_impl="raw")
    parsed = arguments().parse_args(client_args("ws://127.0.0.1:1", token, 3, outer))
    assert (parsed.client, parsed.token, parsed.conns, parsed.url) == (True, token, 3, "ws://127.0.0.1:1")


def test_without_a_token_none_is_passed() -> None:
    outer = argparse.Namespace(warmup=1.0, duration=5.0, client_impl="raw")
    assert arguments().parse_args(client_args("ws://127.0.0.1:1", None, 1, outer)).token is None
