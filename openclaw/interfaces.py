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


class IStore(Interface):
    """
    Durable storage.  Every method returns a Deferred; no method blocks the
    reactor thread.
    """

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


class IConnector(Interface):
    """
    A chat platform connection, a child of the connectors service.
    """

    name = Attribute("The connector's name, e.g. ``telegram``.")

    def is_connected():
        """
        :return: ``True`` while the connector can receive and send.
        """

    def health():
        """
        :return: a JSON-serialisable dict with at least ``connected``,
            ``last_error`` and ``last_receive`` (ISO 8601 or ``None``).
        """
