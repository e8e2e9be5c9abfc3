"""
Reading a model's heartbeat reply: ``HEARTBEAT_OK`` means "nothing to tell
the owner", and the token itself must never reach anyone.

Models dress the token up (``**HEARTBEAT_OK**``, ``> HEARTBEAT_OK``,
``HEARTBEAT_OK. All good.``), so the token counts wherever it opens or closes
the reply, with markdown around it and a short acknowledgement beside it.
Only a longer text next to the token is a message for the owner; it is
delivered without the token.  Pure functions, no I/O.
"""

from __future__ import annotations

import re

TOKEN = "HEARTBEAT_OK"
# A reply that is the token plus at most this much other text is an ack.
MAX_ACK_CHARS = 300

# Markdown and quoting that may wrap the token (emphasis, code, quote, heading).
_DRESSING = r"[\s*_`~>#\"'\u201c\u201d\u2018\u2019()\[\]]*"
# What may follow the token before an ack: punctuation and dashes.
_PUNCTUATION = r"[.!,:;\u2014\u2013\-]*"
_LEADING = re.compile(rf"^{_DRESSING}{TOKEN}(?![A-Za-z0-9]){_DRESSING}{_PUNCTUATION}{_DRESSING}", re.IGNORECASE)
_TRAILING = re.compile(rf"{_DRESSING}(?<![A-Za-z0-9]){TOKEN}{_DRESSING}{_PUNCTUATION}{_DRESSING}$", re.IGNORECASE)
# The token anywhere, with the emphasis or code marks glued to it.
_ANYWHERE = re.compile(rf"[*_`~]*{TOKEN}[*_`~]*", re.IGNORECASE)
_MARKUP = re.compile(r"[\s*_`~>#]+")


def _strip_edges(text: str) -> tuple[bool, str]:
    """Remove the dressed token from both ends, repeatedly; whether any was found."""
    found = False
    while True:
        match = _LEADING.match(text)
        if match:
            text, found = text[match.end():], True
            continue
        match = _TRAILING.search(text)
        if match:
            text, found = text[:match.start()], True
            continue
        return found, text


def is_heartbeat_ok(text: str) -> bool:
    """
    Whether ``text`` says "nothing to report": the token opens or closes it
    (in any markdown dressing) and what remains is at most a short ack.
    """
    found, rest = _strip_edges(text)
    if not found:
        return False
    return len(_MARKUP.sub(" ", strip_token(rest)).strip()) <= MAX_ACK_CHARS


def strip_token(text: str) -> str:
    """
    ``text`` without any occurrence of the token (and the markdown glued to
    it), trimmed: what may be delivered.  Removal repeats until none is left,
    so no arrangement of letters can smuggle the token through.
    """
    _, text = _strip_edges(text)
    while _ANYWHERE.search(text):
        text = _ANYWHERE.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
