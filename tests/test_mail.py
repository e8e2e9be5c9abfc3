"""
The mail watch: importance rules and mail parsing (pure, with hypothesis),
the IDLE extension on a string transport, and the watcher against a real
Dovecot (tests/imap_server.py) with a SQLite store and the real Notifier.
"""

from __future__ import annotations

import json
import string
from typing import Any, Callable

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from openclaw.agent.base import BrainReply
from openclaw.metrics import REGISTRY
from openclaw.notify import Notifier
from openclaw.backoff import backoff_policy
from openclaw.config.proactive import MailConfig
from openclaw.proactive.importance import Verdict, consult, gist, judge, model_judge
from openclaw.proactive.mail import (
    FAILED_RETRY,
    IDLE_RENEW,
    RETRY_BASE,
    RETRY_CAP,
    RETRY_JITTER,
    MailWatchService,
    NewMail,
    WatchClient,
    excerpt_of,
    notification_text,
    parse_fetched,
    uid_set,
)
from tests.imap_server import PASSWORD, USER, message, running_dovecot
from tests.llm_servers import eliot_messages
from tests.strategies import mail_keywords, word_separators

BOSS = "Big Boss <boss@example.com>"
RULES = MailConfig(name="inbox", host="127.0.0.1", user=USER, vip=("boss@example.com", "@vip.example"),
                   keywords=("urgent", "server down"))

# --- importance.py -------------------------------------------------------------------


def test_no_rule_means_not_important() -> None:
    assert judge("Stranger <x@example.net>", "Lunch?", (), "Are you free at noon?", RULES) == Verdict(False)


@given(st.sampled_from(["boss@example.com", "someone@vip.example"]), st.randoms())
def test_vip_sender_matches_its_address_in_any_case(addr: str, rnd: Any) -> None:
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in addr)
    verdict = judge(f"Display Name <{mixed}>", "hello", (), "", RULES)
    assert verdict.important and verdict.reason.startswith("vip:")


def test_vip_needs_the_address_not_a_display_name_or_lookalike() -> None:
    assert not judge('"boss@example.com" <mallory@evil.example>', "hi", (), "", RULES).important
    assert not judge("x@notvip.example", "hi", (), "", RULES).important
    assert not judge("boss@example.com.evil.example", "hi", (), "", RULES).important


@given(mail_keywords(), word_separators(), word_separators(), st.booleans())
def test_keyword_matches_as_a_whole_word_ignoring_case(word: str, before: str, after: str, in_subject: bool) -> None:
    config = MailConfig(name="m", host="h", user="u", keywords=(word,))
    text = f"Hello{before}{word.swapcase()}{after}bye"
    verdict = judge("a@b.c", text if in_subject else "Hi", (), "" if in_subject else text, config)
    assert verdict == Verdict(True, f"keyword:{word}")


@given(mail_keywords(), st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=3))
def test_keyword_inside_a_longer_word_does_not_match(word: str, glued: str) -> None:
    config = MailConfig(name="m", host="h", user="u", keywords=(word,))
    assert not judge("a@b.c", f"{glued}{word}{glued}", (), f"{word}{glued}", config).important


def test_flagged_mail_is_important() -> None:
    assert judge("a@b.c", "x", ("\\Seen", "\\FLAGGED"), "", RULES) == Verdict(True, "flagged")


def test_gist_is_the_first_sentence_else_the_subject() -> None:
    assert gist("Budget", "Please approve the budget.  It is due\nFriday.") == "Please approve the budget."
    assert gist("  Budget   for   2025 ", "") == "Budget for 2025"
    assert gist("s", "word " * 100, limit=30) == "word word word word word word…"


@given(st.text(), st.text(), st.integers(min_value=2, max_value=200))
def test_gist_is_one_bounded_line(subject: str, excerpt: str, limit: int) -> None:
    line = gist(subject, excerpt, limit)
    assert len(line) <= limit
    assert "\n" not in line and line == line.strip()


@pytest_twisted.inlineCallbacks
def test_the_model_is_asked_only_when_the_rules_say_no_and_cannot_demote() -> Any:
    asked: list[tuple] = []

    def ask(*args: str) -> Deferred:
        asked.append(args)
        return succeed(True)

    vip = Verdict(True, "vip:boss@example.com")
    assert (yield consult(vip, ask, "s", "subj", "text")) == vip
    assert asked == []
    assert (yield consult(Verdict(False), ask, "s", "subj", "text")) == Verdict(True, "model")
    assert asked == [("s", "subj", "text")]
    assert (yield consult(Verdict(False), lambda *a: succeed(False), "s", "x", "")) == Verdict(False)
    assert (yield consult(Verdict(False), None, "s", "x", "")) == Verdict(False)


@pytest_twisted.inlineCallbacks
def test_a_failing_model_leaves_the_rules_verdict() -> Any:
    def raises(*args: str) -> Any:
        raise RuntimeError("boom")

    assert (yield consult(Verdict(False), raises, "s", "x", "")) == Verdict(False)
    assert (yield consult(Verdict(False), lambda *a: fail(RuntimeError("no")), "s", "x", "")) == Verdict(False)
    assert (yield consult(Verdict(False), lambda *a: succeed("yes"), "s", "x", "")) == Verdict(False)


@pytest_twisted.inlineCallbacks
def test_model_judge_asks_a_brain_and_reads_the_first_word() -> Any:
    class Brain:
        def __init__(self, answer: str) -> None:
            self.answer, self.requests = answer, []

        def respond(self, request: Any) -> Deferred:
            self.requests.append(request)
            return succeed(BrainReply(text=self.answer, provider="fake"))

    yes, no = Brain(" important - the boss asks"), Brain("SKIP")
    assert (yield model_judge(yes)("a@b.c", "Budget", "Approve it")) is True
    assert (yield model_judge(no)("a@b.c", "Budget", "Approve it")) is False
    assert "Subject: Budget" in yes.requests[0].text and "Approve it" in yes.requests[0].text


# --- parsing fetched mail ----------------------------------------------------------


def test_excerpt_decodes_the_first_text_part() -> None:
    qp = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    assert excerpt_of(qp, b"", b"Hall=C3=B6\r\n  there.") == "Hallö there."
    html = b"Content-Type: text/html\r\n\r\n"
    assert excerpt_of(b"", html, b"<style>p{}</style><p>Hi &amp; bye</p>") == "Hi & bye"
    nested = (b"--in\r\nContent-Type: text/plain\r\n\r\nfirst text\r\n--in\r\nContent-Type: text/html\r\n\r\n"
              b"<b>html</b>\r\n--in--\r\n")
    assert excerpt_of(b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n', b"", nested) == "first text"
    b64 = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert excerpt_of(b64, b"", b"aGVsbG8gd29y") == "hello wor"  # cut mid-quad still reads


@given(st.binary(max_size=300), st.binary(max_size=200), st.binary(max_size=600))
def test_excerpt_never_raises_and_is_bounded(part_header: bytes, header: bytes, body: bytes) -> None:
    text = excerpt_of(part_header, header, body)
    assert isinstance(text, str) and len(text) <= 300


@given(st.dictionaries(st.one_of(st.text(max_size=5), st.tuples(st.just("BODY"), st.tuples(st.text(max_size=8)))),
                       st.one_of(st.text(max_size=50), st.lists(st.text(max_size=5), max_size=3)), max_size=6))
def test_parse_fetched_never_raises(values: dict) -> None:
    mail = parse_fetched(values)
    assert mail is None or isinstance(mail, NewMail)


def test_parse_fetched_reads_twisted_fetch_results() -> None:
    header = "From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"
    mail = parse_fetched({
        "UID": "42", "FLAGS": ["\\Flagged"],
        ("BODY", ("HEADER.FIELDS", ("FROM", "SUBJECT"))): header,
        ("BODY", ("1.MIME",)): header,
        ("BODY", ("1",), "<0>"): "See you. Bye.",
    })
    assert mail == NewMail(42, "Jörg <j@example.com>", "Grüße", ("\\Flagged",), "See you. Bye.")
    assert notification_text(mail) == "📧 Jörg: Grüße — See you."
    assert notification_text(NewMail(1, "", "Only a subject", (), "")) == "📧 (unknown sender): Only a subject"


@given(st.sets(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=60))
def test_uid_set_round_trips(uids: set[int]) -> None:
    spec = uid_set(sorted(uids)).decode()
    back: set[int] = set()
    for run in spec.split(","):
        first, _, last = run.partition(":")
        back.update(range(int(first), int(last or first) + 1))
    assert back == uids
    assert len(spec.split(",")) <= len(uids)


# --- the IDLE extension --------------------------------------------------------------


def test_idle_sends_done_only_after_the_server_agreed_and_reports_exists() -> None:
    client = WatchClient()
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
    assert client.greeted.called
    woken: list[int] = []
    client.on_exists = lambda: woken.append(1)
    ended = client.idle()
    assert transport.value() == b"0001 IDLE\r\n"
    client.done()  # too early: the server has not said "+" yet
    assert transport.value() == b"0001 IDLE\r\n"
    client.dataReceived(b"+ idling\r\n")
    assert transport.value().endswith(b"DONE\r\n")
    client.dataReceived(b"* 4 EXISTS\r\n0001 OK Idle completed\r\n")
    assert woken == [1] and client.exists_seen and ended.called


# --- against Dovecot -----------------------------------------------------------------


@pytest.fixture
def imap() -> Any:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def imap_tls() -> Any:
    with running_dovecot(tls=True) as server:
        yield server


def within(d: Deferred, seconds: float = 15) -> Deferred:
    """Fail instead of hanging when an awaited event never comes."""
    return d.addTimeout(seconds, reactor)


class Pushes:
    """The Notifier's ``push``: records the alert payloads, wakes waiters."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self._waiters: list[tuple[int, Deferred]] = []

    def __call__(self, session: str, event: str, payload: dict) -> int:
        self.payloads.append(payload)
        for waiter in [w for w in self._waiters if len(self.payloads) >= w[0]]:
            self._waiters.remove(waiter)
            waiter[1].callback(None)
        return 0

    def wait(self, count: int) -> Deferred:
        if len(self.payloads) >= count:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiters.append((count, d))
        return within(d)

    @property
    def messages(self) -> list[str]:
        return [p["message"] for p in self.payloads]


def mailbox(port: int, **settings: Any) -> MailConfig:
    values: dict[str, Any] = dict(name="inbox", host="127.0.0.1", port=port, user=USER, password=PASSWORD,
                                  tls="none", vip=("boss@example.com",), keywords=("urgent",))
    values.update(settings)
    return MailConfig(**values)


class Watch:
    """A started MailWatchService on one mailbox, with its notifier's pushes."""

    def __init__(self, store: Any, config: MailConfig, pushes: Pushes | None = None, **kw: Any) -> None:
        self.pushes = pushes or Pushes()
        self.notifier = Notifier(reactor, store, self.pushes, kick=lambda: None, target="telegram:1")
        self.service = MailWatchService(reactor, store, self.notifier, [config], **kw)
        self.watcher = self.service.watchers[config.name]
        self.service.startService()

    def until(self, predicate: Callable[[Any], bool]) -> Deferred:
        return within(self.watcher.wait_for(predicate))

    def watching(self) -> Deferred:
        """Connected, position loaded, first look at the mailbox done."""
        return self.until(lambda w: w.state == "watching" and w.last_check is not None)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest_twisted.inlineCallbacks
def test_new_mail_is_noticed_once_and_a_restart_neither_repeats_nor_misses(imap: Any, store: Any) -> Any:
    with eliot_messages() as logged:
        old = yield imap.append(message(BOSS, "Old news", "From last week."))
        watch = Watch(store, mailbox(imap.port))
        yield watch.watching()
        assert watch.watcher.last_uid == old  # the first connect starts at the newest mail: no flood
        uid1 = yield imap.append(message(BOSS, "Budget", "Please approve the budget. It is due Friday."))
        yield watch.pushes.wait(1)
        yield watch.until(lambda w: w.last_uid == uid1)
        yield watch.service.stopService()
        assert watch.watcher.state == "stopped"

        uid2 = yield imap.append(message(BOSS, "While you were away", "Call me back."))
        again = Watch(store, mailbox(imap.port), watch.pushes)  # the daemon restarted
        yield again.until(lambda w: w.last_uid == uid2)
        uid3 = yield imap.append(message(BOSS, "Later", "One more thing."))
        yield again.until(lambda w: w.last_uid == uid3)
        yield again.service.stopService()

    assert watch.pushes.messages == [
        "📧 Big Boss: Budget — Please approve the budget.",
        "📧 Big Boss: While you were away — Call me back.",
        "📧 Big Boss: Later — One more thing.",
    ]
    assert (yield store.get_state("mail:inbox")) == {"uidvalidity": again.watcher.uidvalidity, "last_uid": uid3}
    assert (yield store.outbox_counts())["pending"] == 3
    assert "\\Seen" not in (yield imap.flags(uid1))  # read with BODY.PEEK
    connects = [m for m in logged if m.get("action_type") == "openclaw:mail:connect"]
    assert connects and all(m.get("user") == USER for m in connects if m.get("action_status") == "started")
    assert PASSWORD not in json.dumps(logged, default=str)


@pytest_twisted.inlineCallbacks
def test_only_important_mail_is_notified_and_the_model_may_promote(imap: Any, store: Any) -> Any:
    def ask(sender: str, subject: str, excerpt: str) -> Deferred:
        return fail(RuntimeError("model down")) if subject == "Newsletter" else succeed(subject == "Lunch?")

    watch = Watch(store, mailbox(imap.port), ask_model=ask)
    yield watch.watching()
    skipped = sample("openclaw_mail_notified_total", mailbox="inbox", important="false")
    yield imap.append(message("Stranger <x@example.net>", "Newsletter", "Nothing to see."))
    yield imap.append(message("BOSS@EXAMPLE.COM", "Hi", "From the boss."))
    yield imap.append(message("Ops <ops@example.net>", "Disk", "<p>This is <b>URGENT</b>: disk full.</p>", html=True))
    yield imap.append(message("Stranger <y@example.net>", "Marked", "Look."), flags="(\\Flagged)")
    yield imap.append(message("Friend <f@example.net>", "Lunch?", "Noon?"))
    last = yield imap.append(message("Stranger <z@example.net>", "Ads", "Buy now."))
    yield watch.until(lambda w: w.last_uid == last)
    yield watch.service.stopService()
    assert watch.pushes.messages == [
        "📧 BOSS@EXAMPLE.COM: Hi — From the boss.",
        "📧 Ops: Disk — This is URGENT: disk full.",
        "📧 Stranger: Marked — Look.",
        "📧 Friend: Lunch? — Noon?",
    ]
    assert sample("openclaw_mail_notified_total", mailbox="inbox", important="false") == skipped + 2


@pytest_twisted.inlineCallbacks
def test_idle_notices_mail_without_polling_and_is_renewed(imap: Any, store: Any) -> Any:
    clock = Clock()  # never advanced but for the renewal: polling cannot happen
    watch = Watch(store, mailbox(imap.port, poll_every=3600.0), clock=clock)
    yield watch.watching()
    assert watch.watcher.health()["mode"] == "idle"
    uid = yield imap.append(message(BOSS, "Ping", "Are you there?"))
    yield watch.pushes.wait(1)
    yield watch.until(lambda w: w.last_uid == uid)

    clock.advance(IDLE_RENEW)  # the IDLE is ended and re-issued before the server drops it
    yield watch.until(lambda w: w.last_check == IDLE_RENEW)
    uid = yield imap.append(message(BOSS, "Pong", "Still here."))
    yield watch.pushes.wait(2)
    assert watch.watcher.proto.idles >= 2  # the renewal ended one IDLE; mail still wakes the next
    yield watch.service.stopService()
    assert watch.pushes.messages == ["📧 Big Boss: Ping — Are you there?", "📧 Big Boss: Pong — Still here."]


@pytest_twisted.inlineCallbacks
def test_without_idle_the_mailbox_is_polled(imap: Any, store: Any) -> Any:
    clock = Clock()
    watch = Watch(store, mailbox(imap.port, idle=False, poll_every=60.0), clock=clock)
    yield watch.watching()
    assert watch.watcher.health()["mode"] == "poll"
    uid = yield imap.append(message(BOSS, "Polled", "Found by polling."))
    clock.advance(60)
    yield watch.until(lambda w: w.last_uid == uid)
    yield watch.service.stopService()
    assert watch.pushes.messages == ["📧 Big Boss: Polled — Found by polling."]


@pytest_twisted.inlineCallbacks
def test_a_changed_uidvalidity_resets_to_now_without_notifying(imap: Any, store: Any) -> Any:
    yield imap.append(message(BOSS, "One", "First."))
    newest = yield imap.append(message(BOSS, "Two", "Second."))
    yield store.set_state("mail:inbox", {"uidvalidity": 1, "last_uid": 0})
    watch = Watch(store, mailbox(imap.port))
    yield watch.watching()
    yield watch.service.stopService()
    assert watch.pushes.messages == []
    saved = yield store.get_state("mail:inbox")
    assert saved == {"uidvalidity": watch.watcher.uidvalidity, "last_uid": newest}
    assert saved["uidvalidity"] != 1


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_fails_and_is_retried_only_hourly(imap: Any, store: Any) -> Any:
    clock = Clock()
    wrong = "pw-never-logged-7731"
    with eliot_messages() as logged:
        watch = Watch(store, mailbox(imap.port, password=wrong), clock=clock)
        yield watch.until(lambda w: w.state == "failed")
        health = watch.service.health()["inbox"]
        assert health["attempts"] == 1 and health["state"] == "failed"
        assert "AUTHENTICATIONFAILED" in health["last_error"]
        clock.advance(FAILED_RETRY - 1)
        assert watch.watcher.attempts == 1
        clock.advance(1)
        yield watch.until(lambda w: w.attempts == 2 and w.state == "failed")
        yield watch.service.stopService()
    assert watch.watcher.state == "stopped"
    assert wrong not in json.dumps(logged, default=str) + json.dumps(health)


@pytest_twisted.inlineCallbacks
def test_a_missing_password_or_clear_text_to_a_remote_host_is_refused(store: Any) -> Any:
    watch = Watch(store, mailbox(1, password="", password_env="OPENCLAW_TEST_NO_SUCH_VAR"), environ={})
    yield watch.until(lambda w: w.state == "failed")
    assert "OPENCLAW_TEST_NO_SUCH_VAR" in watch.watcher.last_error
    yield watch.service.stopService()
    remote = Watch(store, mailbox(1, host="192.0.2.1"))
    yield remote.until(lambda w: w.state == "failed")
    assert "clear" in remote.watcher.last_error and remote.watcher.attempts == 1
    yield remote.service.stopService()


@pytest_twisted.inlineCallbacks
def test_connection_failures_back_off_exponentially(store: Any) -> Any:
    closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    port = closed.getHost().port
    yield closed.stopListening()  # nothing listens there now: connection refused
    clock = Clock()
    # The whole step (2, 4, 8 s): sums of these stay exact on the Clock.
    watch = Watch(store, mailbox(port), clock=clock, rand=lambda: 1.0)
    yield watch.until(lambda w: w.state == "backoff")
    assert "refused" in watch.watcher.last_error.lower()
    backoff = backoff_policy(RETRY_BASE, RETRY_CAP, jitter=RETRY_JITTER, rand=lambda: 1.0)
    for attempt in (1, 2, 3):
        delay = backoff(attempt - 1)
        clock.advance(delay - 0.01)
        assert watch.watcher.attempts == attempt
        clock.advance(0.01)
        yield watch.until(lambda w, n=attempt + 1: w.attempts == n and w.state == "backoff")
    yield watch.service.stopService()
    assert watch.watcher.state == "stopped"


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("tls", ["tls", "starttls"])
def test_tls_and_starttls_trust_the_configured_ca(imap_tls: Any, store: Any, tls: str) -> Any:
    port = imap_tls.imaps_port if tls == "tls" else imap_tls.port
    watch = Watch(store, mailbox(port, tls=tls, ca_file=imap_tls.ca.ca_file))
    yield watch.watching()
    uid = yield imap_tls.append(message(BOSS, "Secure", "Over TLS."))
    yield watch.until(lambda w: w.last_uid == uid)
    yield watch.service.stopService()
    assert watch.pushes.messages == ["📧 Big Boss: Secure — Over TLS."]


@pytest_twisted.inlineCallbacks
def test_tls_refuses_an_untrusted_certificate(imap_tls: Any, store: Any) -> Any:
    watch = Watch(store, mailbox(imap_tls.imaps_port, tls="tls"), clock=Clock())
    yield watch.until(lambda w: w.state == "backoff")
    yield watch.service.stopService()
    assert "certificate" in watch.watcher.last_error.lower()
    assert watch.pushes.messages == []
