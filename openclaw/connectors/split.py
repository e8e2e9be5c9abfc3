"""
Splitting a long reply into messages a platform accepts (Telegram: 4,096
UTF-16 code units; Discord: 2,000 characters; Slack: 40,000 characters).

Cuts fall on paragraph breaks, else line breaks, else spaces, else anywhere;
no text other than whitespace at a cut is lost, and no part is empty.
"""

from __future__ import annotations

from typing import Callable

SEPARATORS = ("\n\n", "\n", " ")


def utf16_length(text: str) -> int:
    """Telegram measures texts in UTF-16 code units (an emoji counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int, size: Callable[[str], int]) -> int:
    """The longest prefix length of ``text`` whose size is at most ``limit``."""
    if size(text) <= limit:
        return len(text)
    low, high = 0, min(len(text), limit)
    while low < high:
        mid = (low + high + 1) // 2
        if size(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return max(low, 1)


def split_text(text: str, limit: int, size: Callable[[str], int] = len) -> list[str]:
    """
    ``text`` in parts of at most ``limit`` (as measured by ``size``), cut at
    the best boundary in the part's second half where there is one.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts = []
    rest = text.strip()
    while rest:
        end = _fit(rest, limit, size)
        if end < len(rest):
            for separator in SEPARATORS:
                cut = rest.rfind(separator, 0, end)
                if cut >= end // 2:
                    end = cut
                    break
        part, rest = rest[:end].rstrip(), rest[end:].lstrip()
        if part:
            parts.append(part)
    return parts
