"""
Hypothesis strategies shared by the tests, as small documented functions
(Tahoe-LAFS's ``allmydata.test.strategies`` is the model): a test module
imports what it draws from here instead of defining its own.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from hypothesis import strategies as st

from openclaw.config.proactive import ActiveHours
from openclaw.logs import MIN_SECRET_LENGTH
from openclaw.proactive.verdict import TOKEN

# JSON-like values, in general and shaped like each platform's payloads


def json_values(
    keys: st.SearchStrategy[str] | Sequence[str] = st.text(max_size=8), strings: st.SearchStrategy[str] | None = None,
    integers: st.SearchStrategy[int] = st.integers(), floats: bool = False, max_size: int = 4, max_leaves: int = 20,
) -> st.SearchStrategy[Any]:
    """
    Nested JSON values (null, booleans, numbers, ``strings``, lists, objects);
    object keys from ``keys`` (a list of names: the ones a parser looks for).
    """
    if not isinstance(keys, st.SearchStrategy):
        keys = st.sampled_from(list(keys))
    scalars = st.none() | st.booleans() | integers | (strings if strings is not None else st.text(max_size=10))
    if floats:
        scalars = scalars | st.floats(allow_nan=False)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=max_size) | st.dictionaries(keys, inner, max_size=max_size),
        max_leaves=max_leaves,
    )


def frame_values() -> st.SearchStrategy[Any]:
    """Values inside gateway frames: integers a JavaScript client keeps exact."""
    return json_values(integers=st.integers(-(2**53), 2**53), strings=st.text(max_size=20), max_leaves=12)


def telegram_values() -> st.SearchStrategy[Any]:
    """Bot API updates and answers, whole or in pieces."""
    return json_values(["message", "chat", "from", "id", "text", "message_id", "first_name", "update_id", "ok",
                        "result", "error_code", "description", "parameters", "retry_after"], floats=True, max_size=5)


def whatsapp_values() -> st.SearchStrategy[Any]:
    """Cloud API webhook notifications, whole or in pieces."""
    return json_values(["object", "entry", "changes", "value", "field", "messages", "statuses", "from", "id", "type",
                        "text", "body", "contacts", "profile", "name", "wa_id", "metadata", "status"],
                       max_size=5, max_leaves=30)


def slack_values() -> st.SearchStrategy[Any]:
    """Anything a Socket Mode frame could carry."""
    return json_values(st.text(max_size=10), strings=st.text(max_size=20), max_size=3, max_leaves=12)


def slack_events(bot_user: str) -> st.SearchStrategy[Any]:
    """Events with some of the fields a message event has, right or wrong."""
    junk = slack_values()
    return st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["message", "app_mention", "other"]) | junk,
        "channel": st.text(max_size=5) | junk, "user": st.sampled_from(["U1", bot_user]) | junk,
        "text": st.text(max_size=30) | junk, "ts": st.text(max_size=5) | junk,
        "channel_type": st.just("im") | junk, "subtype": junk, "bot_id": junk,
    })


def openai_values() -> st.SearchStrategy[Any]:
    """Chat Completions answers, whole or in pieces."""
    return json_values(["choices", "message", "content", "tool_calls", "function", "name", "arguments", "id",
                        "usage", "prompt_tokens", "completion_tokens", "x"],
                       strings=st.text(max_size=5), floats=True, max_size=3)


def anthropic_values() -> st.SearchStrategy[Any]:
    """Messages API answers, whole or in pieces."""
    return json_values(["type", "text", "tool_use", "id", "name", "input", "content", "stop_reason", "input_tokens",
                        "output_tokens"], strings=st.text(max_size=5), max_size=3)


# Secrets in log messages


def secret_strings() -> st.SearchStrategy[str]:
    """
    Secrets as tokens look: no markup, quotes or backslashes, so a JSON
    escape can neither hide nor fake one, and none can be the marker itself.
    """
    return st.text(
        alphabet=st.characters(blacklist_characters='<>\\"', blacklist_categories=("Cc", "Cs")),
        min_size=MIN_SECRET_LENGTH, max_size=20,
    ).filter(lambda s: s != "redacted")


def plain_keys() -> st.SearchStrategy[str]:
    """Dict keys that can hold neither a secret (too short) nor a secret-looking name."""
    return st.text(alphabet="abcdefgh", max_size=6)


def any_secrets() -> st.SearchStrategy[str]:
    """Secrets of any characters (quotes, spaces, NUL, non-ASCII), as passwords are."""
    return st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=MIN_SECRET_LENGTH, max_size=16)


@st.composite
def values_with_planted_secrets(draw: st.DrawFn, secret_keys: bool = True) -> tuple[Any, list[str]]:
    """A value whose strings (and, if ``secret_keys``, keys) are built partly out of the secrets."""
    planted = draw(st.lists(secret_strings(), min_size=1, max_size=3))
    pieces = st.lists(st.text(max_size=6) | st.sampled_from(planted), max_size=4).map("".join)
    keys = plain_keys() | pieces if secret_keys else plain_keys()
    return draw(json_values(keys, strings=pieces, floats=True)), planted


# Configuration


def duration_parts() -> st.SearchStrategy[list[tuple[int, str]]]:
    """The ``(number, unit)`` parts of a duration such as ``1h30m``."""
    return st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h", "d"])),
                    min_size=1, max_size=4)


def config_documents() -> st.SearchStrategy[dict]:
    """Config files of known and unknown sections and keys, with values of any type."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
    return st.dictionaries(
        st.sampled_from(["daemon", "gateway", "web", "log", "state", "heartbeat", "store", "nope"]),
        st.none() | scalars | st.dictionaries(
            st.sampled_from(["listen", "token", "max_frame_bytes", "drain_timeout", "max_bad_frames",
                             "level", "max_bytes", "backups", "save_every", "every", "path", "bad"]),
            scalars, max_size=4),
        max_size=4,
    )


def state_sessions() -> st.SearchStrategy[dict]:
    """gateway-state.json's sessions: good entries and entries of the wrong shape."""
    return st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.one_of(
            st.fixed_dictionaries({"channel": st.text(max_size=10), "first_seen": st.floats(0, 2e9),
                                   "last_active": st.floats(0, 2e9), "peer": st.none() | st.text(max_size=10)}),
            st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        ),
        max_size=6,
    )


def nofile_limits() -> st.SearchStrategy[int]:
    """Open-file limits, from none to far past any real one."""
    return st.integers(min_value=0, max_value=2**40)


def unit_strings() -> st.SearchStrategy[str]:
    """Text a systemd unit may have to quote: anything but control characters and surrogates."""
    return st.text(st.characters(blacklist_categories=("Cc", "Cs")))


# The store


def store_operations() -> st.SearchStrategy[list[tuple]]:
    """
    Steps of the store's model test: ``("record", session, platform id or
    None)``, ``("complete", index of a recorded event)`` or ``("fail", index)``.
    """
    return st.lists(
        st.one_of(
            st.tuples(st.just("record"), st.integers(0, 2), st.none() | st.integers(0, 3)),
            st.tuples(st.just("complete"), st.integers(0, 20)),
            st.tuples(st.just("fail"), st.integers(0, 20)),
        ),
        max_size=25,
    )


# Chat text


def split_words() -> st.SearchStrategy[list[str]]:
    """Pieces of a long reply: words, emoji (two UTF-16 units), newlines, spaces, an unbreakable run."""
    return st.lists(st.sampled_from(["a", "word", "longerword", "😀", "\n", "\n\n", " ", "x" * 30]), max_size=200)


def mail_keywords() -> st.SearchStrategy[str]:
    """A keyword a mail rule looks for."""
    return st.text(string.ascii_letters, min_size=1, max_size=12)


def word_separators() -> st.SearchStrategy[str]:
    """What may stand between words: spaces, punctuation, newlines."""
    return st.text(" .,:;!?()-\n", min_size=1, max_size=3)


# The heartbeat's answer

_WRAPS = [("", ""), ("**", "**"), ("__", "__"), ("*", "*"), ("_", "_"), ("`", "`"), ("```\n", "\n```"),
          ("~~", "~~"), ("> ", ""), ("# ", ""), ("### ", ""), ('"', '"'), ("(", ")"), ("[", "]")]


def spaces() -> st.SearchStrategy[str]:
    """A little whitespace, maybe none."""
    return st.text(alphabet=" \t\n", max_size=4)


def punctuation() -> st.SearchStrategy[str]:
    """What a model puts after a word."""
    return st.sampled_from(["", ".", "!", ":", " -", " \u2014", ",", "..."])


def acknowledgements() -> st.SearchStrategy[str]:
    """Prose that does not contain the heartbeat token."""
    return st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "Zs", "P")), max_size=200).filter(
        lambda t: TOKEN.lower() not in t.lower())


@st.composite
def dressed_tokens(draw: st.DrawFn) -> str:
    """The heartbeat token with markdown around it, maybe nested, with spaces and punctuation."""
    token = draw(st.sampled_from([TOKEN, TOKEN.lower(), "Heartbeat_OK"]))
    for left, right in draw(st.lists(st.sampled_from(_WRAPS), max_size=3)):
        token = left + token + right
    return draw(spaces()) + token + draw(punctuation()) + draw(spaces())


# Checks and schedules


def check_configs(build: Callable[..., Any]) -> st.SearchStrategy[Any]:
    """Check configs from ``build(**policy)``: thresholds, re-alerting and flap windows, off or on."""
    return st.builds(
        build,
        fail_after=st.integers(1, 5),
        realert_every=st.sampled_from([0.0, 0.0, 5.0, 30.0, 100.0]),
        flap_window=st.sampled_from([0.0, 0.0, 10.0, 60.0, 300.0]),
    )


def check_results() -> st.SearchStrategy[list[tuple[bool, float]]]:
    """A check's results: ``(ok, seconds since the previous one)``."""
    return st.lists(st.tuples(st.booleans(), st.floats(0.001, 120.0)), max_size=80)


def cron_expressions() -> st.SearchStrategy[str]:
    """Five-field cron expressions with lists, ranges and steps, some matching rarely."""
    return st.builds(
        lambda m, h, dom, dow: f"{m} {h} {dom} * {dow}",
        st.sampled_from(["0", "30", "*/15", "0,45", "59"]),
        st.sampled_from(["*", "1", "2", "3", "1-3", "*/2", "9"]),
        st.sampled_from(["*", "*", "1", "27-31"]),
        st.sampled_from(["*", "*", "0", "1-5"]),
    )


def dst_starts() -> st.SearchStrategy[float]:
    """Instants within three days after a day around 2024's DST changes (and a quiet one)."""
    days = [datetime(2024, m, d, tzinfo=timezone.utc).timestamp()
            for m, d in ((3, 9), (3, 30), (10, 26), (11, 2), (4, 6))]
    return st.builds(lambda day, minute: day + minute * 60.0, st.sampled_from(days), st.integers(0, 3 * 1440))


# Backoff and periodic services


def unit_floats() -> st.SearchStrategy[float]:
    """What a random source returns: a float in [0, 1]."""
    return st.floats(0, 1)


def backoff_settings() -> st.SearchStrategy[dict]:
    """Keyword arguments for ``backoff_policy``: base, cap, growth and jitter share."""
    return st.fixed_dictionaries({
        "initial": st.floats(0, 1e4),
        "cap": st.floats(0, 1e6),
        "factor": st.floats(1, 10),
        "jitter": unit_floats(),
    })


def attempts() -> st.SearchStrategy[int]:
    """An attempt count, far past where any delay reaches its cap."""
    return st.integers(0, 5000)


def intervals() -> st.SearchStrategy[float]:
    """A periodic interval on a ``task.Clock``; ``0`` calls only on request."""
    return st.sampled_from([0.0, 1.0, 2.5, 10.0])


def clock_steps() -> st.SearchStrategy[float]:
    """How far a state machine moves its ``task.Clock`` in one step."""
    return st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0, 30.0])


def active_hours() -> st.SearchStrategy[ActiveHours | None]:
    """A heartbeat window: none, a day window, one across midnight, or all day (start == end)."""
    clock_time = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))
    return st.none() | st.builds(ActiveHours, clock_time, clock_time)


# Admission


def admission_limits() -> st.SearchStrategy[Any]:
    """``openclaw.admission.Limits``: per-session and overall counts, a wait bound in seconds or 0 (off), in answers."""
    from openclaw.admission import Limits

    return st.builds(Limits, max_queue=st.integers(1, 50), max_pending=st.integers(1, 500),
                     max_wait=st.one_of(st.just(0.0), st.floats(0.01, 100)), wait_answers=st.integers(0, 20))


@st.composite
def admission_loads(draw: st.DrawFn) -> Any:
    """``openclaw.admission.Load``: a session's share never more than the total."""
    from openclaw.admission import Load

    pending = draw(st.integers(0, 600))
    return Load(session_pending=draw(st.integers(0, min(pending, 60))), pending=pending,
                handling=draw(st.floats(0, 60)), spacing=draw(st.floats(0, 10)),
                cluster_wait=draw(st.sampled_from([0.0]) | st.floats(0, 100)))


def outbox_operations() -> st.SearchStrategy[list[tuple[str, int, bool]]]:
    """Outbox row changes (op, row number, rolled back?) for the counter tests."""
    return st.lists(st.tuples(st.sampled_from(["insert", "sent", "failed", "retry", "delete", "prune"]),
                              st.integers(0, 20), st.booleans()), max_size=60)


# Leases across instances (tests/test_cluster_lease.py, tests/test_cluster_keeper.py)


def clock_rates(skew: float) -> st.SearchStrategy[float]:
    """How fast an instance's clock runs against Redis's: within ``skew`` of 1."""
    return st.floats(1 - skew, 1 + skew)


def clock_offsets() -> st.SearchStrategy[float]:
    """Where an instance's clock reads when Redis's reads 0: any offset (only durations matter)."""
    return st.floats(-1e6, 1e6)


def tick_gaps(ttl: float) -> st.SearchStrategy[float]:
    """Seconds between a lease holder's ticks: on time, early, or a pause of one to four TTLs."""
    return st.one_of(st.just(ttl / 3), st.floats(0.1, ttl / 3), st.floats(ttl, 4 * ttl))


def network_delays(ttl: float) -> st.SearchStrategy[tuple[float, float]]:
    """A request's (way there, way back) in seconds: none, a little, or up to three TTLs."""
    delay = st.one_of(st.just(0.0), st.floats(0.0, 2.0), st.floats(0.0, 3 * ttl))
    return st.tuples(delay, delay)


def coarse_delays() -> st.SearchStrategy[tuple[float, float]]:
    """Like ``network_delays`` from a few values, so rare orders (a good renew, then two lost) come up often."""
    lag = st.sampled_from([0.0, 0.0, 0.1, 1.0, 4.0, 20.0])
    return st.tuples(lag, lag)


def pauses(ttl: float, step: float, steps: int) -> st.SearchStrategy[tuple[int, int]]:
    """A process pause (GC, SIGSTOP) as (first step, steps), up to three TTLs long."""
    return st.tuples(st.integers(0, steps), st.integers(1, int(3 * ttl / step)))
