"""
Several daemons on one Redis: instances, leases with fencing, and the work
each lease guards.  With SQLite nothing changes: ``LocalCluster`` is one
instance holding every lease.  Redis's client is imported only when the
store is Redis.
"""

from __future__ import annotations

from typing import Any, Callable

#: The lease of the singleton work: heartbeat, checks, cron, reports, mail, pruning.
SCHEDULER = "scheduler"
CONNECTOR = "connector:"


def connector_lease(platform: str, account: str) -> str:
    """``connector:<platform>:<account>``; ``account`` names the bot without its secret."""
    return f"{CONNECTOR}{platform}:{account}"


def make_cluster(config: Any, clock: Any, store: Any) -> Any:
    """The cluster ``config.store`` implies: on Redis, the instances sharing it; else this one alone."""
    if config.store.url.startswith("redis://"):
        from openclaw.cluster.service import RedisCluster

        return RedisCluster(clock, config.store.url, config.store.prefix, config.cluster)
    from openclaw.cluster.local import LocalCluster

    return LocalCluster(clock, store)


def cluster_status(instance_id: str, instances: list[dict[str, Any]], holds: list[str]) -> dict[str, Any]:
    """The ``cluster`` part of ``/health`` and the ``cluster.status`` answer."""
    return {"instance_id": instance_id, "holds": holds, "instances": instances}


def cluster_methods(cluster: Any) -> dict[str, Callable[[Any, dict], Any]]:
    """``cluster.status``: the live instances (read now), what each holds, and this instance's id."""

    def status(conn: Any, params: dict) -> Any:
        d = cluster.instances()
        return d.addCallback(lambda found: cluster_status(cluster.instance_id, found, cluster.held()))

    return {"cluster.status": status}
