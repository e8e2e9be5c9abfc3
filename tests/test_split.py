"""Splitting long replies at a platform's limit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw.connectors.split import split_text, utf16_length
from tests.strategies import split_words


@given(st.text(max_size=3000), st.integers(min_value=2, max_value=500))
def test_parts_fit_are_not_empty_and_lose_only_whitespace(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


@given(split_words().map("".join), st.integers(min_value=2, max_value=100))
def test_utf16_limit_counts_emoji_twice(text: str, limit: int) -> None:
    for part in split_text(text, limit, utf16_length):
        assert 0 < utf16_length(part) <= limit


def test_cuts_prefer_paragraphs_then_lines_then_spaces() -> None:
    text = "first paragraph here\n\nsecond one\nwith lines and words"
    assert split_text(text, 30) == ["first paragraph here", "second one\nwith lines and", "words"]
    assert split_text("short", 4096) == ["short"]
    assert split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert split_text("   ", 10) == []


def test_a_limit_below_two_is_refused() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 1)
