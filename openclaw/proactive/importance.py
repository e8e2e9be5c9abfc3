"""
Whether a new mail is worth interrupting the owner for, and its one-line gist.

The rules are pure and cheap, so every mail gets them: a VIP sender, a
keyword in the subject or the start of the text, or the ``\\Flagged`` flag.
A model brain, when one is configured, is asked only about mail the rules
let pass; it can promote a mail, never demote one, and when it fails the
rules' verdict stands (a flaky model must not drop a VIP's mail).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed

from openclaw.config.proactive import MailConfig
from openclaw.eliotutil import log, message_type, typed

# ask_model(sender, subject, excerpt) -> Deferred[bool]
AskModel = Callable[[str, str, str], Any]

GIST_MAX = 100


MAIL_MODEL_FAILED = message_type("openclaw:mail:model-failed", [typed("error", [str], "why")],
                                 "the model could not judge a mail: the rules' verdict stands", "warn")


@dataclass(frozen=True)
class Verdict:
    """``reason`` names the rule that fired (``vip:…``, ``keyword:…``, ``flagged``, ``model``)."""

    important: bool
    reason: str = ""


def address(sender: str) -> str:
    """The bare address of a ``From`` value, lower case (``""`` if none)."""
    return parseaddr(sender)[1].strip().lower()


def _vip(sender: str, vips: tuple[str, ...]) -> str:
    """The VIP entry ``sender`` matches: a whole address, or ``@domain`` for a whole domain."""
    addr = address(sender)
    if not addr:
        return ""
    domain = addr.rpartition("@")[2]
    for vip in vips:
        wanted = vip.strip().lower()
        if wanted and (wanted == addr or (wanted.startswith("@") and wanted[1:] == domain)):
            return vip
    return ""


def _keyword(text: str, keywords: tuple[str, ...]) -> str:
    """The first keyword found in ``text`` as whole words, ignoring case."""
    for keyword in keywords:
        words = keyword.strip()
        if words and re.search(rf"(?<!\w){re.escape(words)}(?!\w)", text, re.IGNORECASE):
            return keyword
    return ""


def judge(sender: str, subject: str, flags: tuple[str, ...], excerpt: str, config: MailConfig) -> Verdict:
    """The rules' verdict on one mail."""
    vip = _vip(sender, config.vip)
    if vip:
        return Verdict(True, f"vip:{vip}")
    keyword = _keyword(f"{subject}\n{excerpt}", config.keywords)
    if keyword:
        return Verdict(True, f"keyword:{keyword}")
    if any(flag.lower() == "\\flagged" for flag in flags):
        return Verdict(True, "flagged")
    return Verdict(False)


def consult(verdict: Verdict, ask_model: AskModel | None, sender: str, subject: str, excerpt: str) -> Deferred:
    """
    ``verdict``, or the model's ``True`` as ``Verdict(True, "model")`` when the
    rules said no and a model is configured.  :return: a Deferred that never fails.
    """
    if verdict.important or ask_model is None:
        return succeed(verdict)

    def failed(failure: Any) -> Verdict:
        log(MAIL_MODEL_FAILED, level="warn", error=repr(failure.value))
        return verdict

    d = maybeDeferred(ask_model, sender, subject, excerpt)
    d.addCallback(lambda yes: Verdict(True, "model") if yes is True else verdict)
    d.addErrback(failed)
    return d


def _trim(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut:  # do not end on half a word
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


def gist(subject: str, excerpt: str, limit: int = GIST_MAX) -> str:
    """
    One line saying what the mail is about: the first sentence of the text,
    else the subject, at most ``limit`` characters.
    """
    text = " ".join(excerpt.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] if text else ""
    return _trim(first or subject, limit)


MODEL_QUESTION = (
    "A new email arrived. Should the owner be interrupted about it now? "
    "Answer with one word: IMPORTANT or SKIP.\n\nFrom: {sender}\nSubject: {subject}\n\n{excerpt}"
)


def model_judge(brain: Any) -> AskModel:
    """
    An ``ask_model`` backed by a brain (``IBrain.respond``): the mail goes to
    the model as one question in its own session, the reply's first word decides.
    """
    from openclaw.agent.base import BrainRequest

    def ask(sender: str, subject: str, excerpt: str) -> Deferred:
        text = MODEL_QUESTION.format(sender=sender, subject=subject, excerpt=excerpt)
        d = brain.respond(BrainRequest(session_id="mail:importance", text=text))
        d.addCallback(lambda reply: reply.text.strip().upper().startswith("IMPORTANT"))
        return d

    return ask
