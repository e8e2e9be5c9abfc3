"""
The contracts between openclaw's parts.

Services of the tree, stores and connectors are written against these
interfaces so that tests and later implementations (Redis, real chat
platforms) can stand in for one another.
"""

from zope.interface import Attribute, Interface


class IDrainable(Interface):
    """
    A service that must quiesce before the tree stops.

    The root calls ``drain()`` on every child that provides this, last child
    first and one at a time, before it stops any child.  Draining means: take
    no new work, let in-flight work finish, stay able to report status.
    """

    def drain():
        """
        Stop taking new work and wait for work in flight.

        :return: a Deferred that fires when nothing is in flight any more
            (or the service's own drain bound has passed).
        """

    def hurry():
        """
        Give up waiting for in-flight work now (a second SIGINT/SIGTERM).
        """


class IAdmission(Interface):
    """
    A service that takes new work from outside (the gateway, the pipeline).
    """

    def refuse_new():
        """
        From now on take no new work: stop listening, refuse new requests.
        Called on every such service at once when shutdown begins, before
        any service drains; work already taken goes on.
        """


class IReconfigurable(Interface):
    """
    A service that takes a new configuration while it runs (reload).

    The root calls ``reconfigure`` on every such child, in start order,
    with the whole validated config; each takes its own part and leaves
    alone what did not change (a connector whose section is the same keeps
    its socket).
    """

    def reconfigure(config):
        """
        Apply ``config`` (an ``openclaw.config.Config``).

        :return: ``None`` or a Deferred firing once applied; a failure is
            logged and leaves this service as it was.
        """


class IStatusSource(Interface):
    """
    A service that reports its own state: ``/health``, the gateway's
    ``health``/``status`` methods, the heartbeat's snapshot and the rules
    brain read these from the services themselves (through the root's
    ``sections()``), never from copies kept elsewhere.
    """

    status_key = Attribute("The key of this service's part of /health (``store``, ``connectors`` ...).")

    def status():
        """:return: this service's part of ``/health``: JSON-ready, cheap to build."""

    def problems():
        """
        :return: a list of short texts, one per reason this service makes the
            daemon unhealthy now (``/health`` answers 503 "degraded"); empty
            when it is fine.
        """

    def blocks_readiness():
        """
        :return: ``True`` while the daemon must not be sent new work because
            of this service (``/readyz`` answers 503): a failing store does,
            a chat connector that is down does not.
        """


class IStore(Interface):
    """
    Durable storage: SQLite (embedded default) or Redis.  Every method
    returns a Deferred and none blocks the reactor thread.  A Deferred fires
    only once what it wrote is durable, so callers may acknowledge after it.
    Both implementations pass ``tests/store_contract.py``.
    """

    # Key/value state

    def get_state(key):
        """
        :return: a Deferred firing with the JSON value stored under ``key``,
            or ``None`` when there is none.
        """

    def set_state(key, value):
        """
        Store a JSON-serialisable ``value`` under ``key``, replacing any.
        """

    def delete_state(key):
        """
        Remove ``key``; removing a missing key is not an error.
        """

    def state_keys(prefix):
        """
        :return: a Deferred firing with the sorted keys that start with
            ``prefix``.
        """

    # Inbound events

    def record_inbound(event):
        """
        Record an inbound ``openclaw.events.Event`` as ``received``, append
        its text to the session's history as a ``user`` message, and touch
        the session.  Idempotent on ``(event.source,
        event.platform_message_id)`` when the latter is set.

        :return: a Deferred firing with ``(event_id, duplicate)``: the id of
            the stored event (the first one's, for a duplicate) and whether
            this call was a duplicate (nothing was written).
        """

    def pending_inbound():
        """
        :return: a Deferred firing with the inbound events still
            ``received`` (not done, not failed), in the order they were
            recorded: what to replay after a restart.
        """

    def complete_inbound(event_id, replies):
        """
        In one atomic step: mark inbound ``event_id`` done, append each
        reply's text to the history as ``assistant``, and enqueue each of
        ``replies`` (``OutboxItem``s) as pending.  Completing an event that
        is already done changes nothing (replies are never enqueued twice).

        :return: a Deferred firing with the list of outbox ids enqueued
            (empty when the event was already done).
        """

    def fail_inbound(event_id, error):
        """
        Mark inbound ``event_id`` failed with the ``error`` text; it is not
        replayed.
        """

    def inbound_state(event_id):
        """
        :return: a Deferred firing with ``"received"``, ``"done"``,
            ``"failed"`` or ``None`` for an unknown id.
        """

    # Outbox

    def enqueue_outbox(item, remember=False):
        """
        Add one ``OutboxItem`` as pending (for messages not answering an
        inbound event: alerts, reports, tool sends).  Idempotent on
        ``item.dedupe_key``.  ``remember``: in the same atomic step, append
        the text to the session's history as ``assistant`` (only when the
        row is new), so a proactive webchat message is in the history
        whether or not anyone was listening.

        :return: a Deferred firing with ``(outbox_id, duplicate)``.
        """

    def due_outbox(now, limit, channels=None):
        """
        :return: a Deferred firing with up to ``limit`` pending
            ``OutboxItem``s whose ``next_attempt`` is at or before ``now``,
            oldest first; only those of ``channels`` (names) unless it is
            ``None``.
        """

    def mark_sent(outbox_id):
        """Mark an outbox row sent."""

    def mark_retry(outbox_id, next_attempt, error):
        """Count a failed attempt and schedule the next one."""

    def mark_failed(outbox_id, error):
        """Give up on an outbox row: it stays visible as ``failed``."""

    def outbox_counts():
        """
        :return: a Deferred firing with ``{"pending": n, "sent": n,
            "failed": n}``.
        """

    def message_counts(since, until):
        """
        :return: a Deferred firing with ``{channel: {"in": n, "out": n,
            "failed": n}}`` for ``[since, until)``: inbound events recorded
            by source (by event timestamp) and outbox rows now sent or
            failed by channel (by the time they were queued).  Channels
            with nothing in the range are left out.
        """

    def prune(before, limit):
        """
        Delete what only history needs, older than ``before``: sent outbox
        rows (by creation time), inbound events that are done or failed
        (a platform redelivering one of those afterwards would be answered
        again) and journal records.  Pending rows, failed outbox rows and
        events not yet done are kept.  At most ``limit`` rows of each kind
        go per call.

        :return: a Deferred firing with ``{"outbox": n, "inbound": n,
            "journal": n}``, the rows removed.
        """

    # Sessions and history

    def history(session_id, limit):
        """
        :return: a Deferred firing with the last ``limit`` messages of the
            session, oldest first: dicts with ``role`` (``user`` or
            ``assistant``), ``text``, ``event_id``, ``timestamp``.
        """

    def sessions():
        """
        :return: a Deferred firing with a list of dicts: ``session_id``,
            ``channel``, ``peer``, ``first_seen``, ``last_active``.
        """

    # Journal (heartbeats and alerts, for reports)

    def append_journal(kind, timestamp, payload):
        """Append one record (``kind`` like ``heartbeat`` or ``alert``)."""

    def journal(kind, since):
        """
        :return: a Deferred firing with the records of ``kind`` at or after
            ``since``, oldest first: dicts with ``kind``, ``timestamp``,
            ``payload``.
        """


class IBrain(Interface):
    """
    Turns a message (with its session's history) into a reply.  ``rules``
    needs no network; model brains call an LLM API.
    """

    name = Attribute("The brain's name, e.g. ``rules`` or ``openai:gpt-4o-mini``.")
    uses_history = Attribute(
        "Whether requests need the session's history (the pipeline skips the store read when not).")

    def respond(request):
        """
        :param request: an ``openclaw.agent.base.BrainRequest``.
        :return: a Deferred firing with an ``openclaw.agent.base.BrainReply``.
            Failures are ``openclaw.agent.base.BrainError``s that say
            whether they are retryable (the failover tries the next
            provider on those).
        """


class IConnector(Interface):
    """
    A chat platform connection, a child of the connectors service (started
    and stopped by it).  ``openclaw.connectors.base.ConnectorService`` gives
    every platform the reconnect loop, the stall watchdog and access control.
    """

    name = Attribute("The connector's name, e.g. ``telegram``; sessions are ``<name>:<chat id>``.")

    def send_text(chat_id, text, dedupe_key):
        """
        Send ``text`` to ``chat_id``, split as the platform requires.

        :return: a Deferred firing once the platform accepted every part;
            failing otherwise (the outbox retries with the same
            ``dedupe_key``, which platforms that can use to drop repeats).
        """

    def deliver(item):
        """
        The outbox deliverer for this connector's channel: send one
        ``OutboxItem``.  :return: a Deferred firing with ``True`` once sent.
        """

    def is_connected():
        """
        :return: ``True`` while the connector can receive and send.
        """

    def health():
        """
        :return: a JSON-serialisable dict with at least ``connected``,
            ``last_error`` and ``last_receive`` (ISO 8601 or ``None``).
        """


class ICluster(Interface):
    """
    The daemons sharing one store, as this one sees them: which instances
    are alive, and which leases this instance holds.  With SQLite (one
    daemon) ``LocalCluster`` is the only instance and holds every lease.
    """

    instance_id = Attribute("This daemon's id, ``<host>:<pid>:<6 hex>``.")
    alone = Attribute("True for the cluster of one (SQLite): nothing to guard against, nothing to resume from.")

    def alive(instance_id):
        """:return: a Deferred firing with whether ``instance_id``'s registration has not expired."""

    def instances():
        """
        :return: a Deferred firing with the live instances, each a dict: id,
            host, pid, started_at, version, holds (lease names).
        """

    def holds(lease_name):
        """
        Whether this instance may do the work ``lease_name`` guards now
        (known locally, no I/O: a lease is trusted until a margin before it
        could have expired at Redis).
        """

    def lease(lease_name, on_acquired, on_lost):
        """
        Keep trying to hold ``lease_name`` while the cluster runs: call
        ``on_acquired()`` when it is held and ``on_lost()`` as soon as it is
        not (before it could have expired, or when the cluster stops).
        Several callers may watch one lease: acquired in the order they
        asked, lost in reverse.
        """

    def unlease(lease_name, on_acquired, on_lost):
        """
        Stop watching ``lease_name`` with these callbacks (a connector a
        reload removed); with no watcher left the lease is released.
        """

    def guarded_set_state(lease_name, key, value):
        """
        The store's ``set_state`` on behalf of ``lease_name``'s holder,
        refused (failing with ``openclaw.cluster.redis_lease.Fenced``,
        nothing written) when this instance's token is no longer the latest.
        """
