"""
Every Prometheus metric openclaw exports, on one registry.

Names are stable: dashboards and alert rules in ``etc/`` depend on them.
Hot paths bind label children once (see ``RequestMetrics``) instead of calling
``labels()`` per request.
"""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

RESPONSE_BUCKETS = (0.1, 0.5, 1, 2, 5, 10)

requests_total = Counter(
    "openclaw_requests_total",
    "Requests handled, by where they came from and what they asked.",
    ["source", "type"],
    registry=REGISTRY,
)
response_duration = Histogram(
    "openclaw_response_duration_seconds",
    "Time from receiving a request to sending its response.",
    ["source"],
    buckets=RESPONSE_BUCKETS,
    registry=REGISTRY,
)
active_sessions = Gauge(
    "openclaw_active_sessions",
    "Sessions with a live lane (idle lanes are collected after lanes.idle_after).",
    registry=REGISTRY,
)
lane_depth = Gauge(
    "openclaw_lane_queue_depth",
    "Events queued in session lanes, waiting for their turn.",
    registry=REGISTRY,
)
lane_overflows = Counter(
    "openclaw_lane_overflows_total",
    "Events refused because their session's lane was full (the sender was told to retry).",
    registry=REGISTRY,
)
admission_refused = Counter(
    "openclaw_admission_refused_total",
    "Inbound messages refused as busy before anything was recorded, by the bound that refused them.",
    ["reason"],
    registry=REGISTRY,
)
inbound_backlog = Gauge(
    "openclaw_inbound_backlog",
    "With Redis: inbound events received and not yet answered, over all instances (read every 0.1 s).",
    registry=REGISTRY,
)
pending_messages = Gauge(
    "openclaw_pending_messages",
    "Inbound messages acknowledged (or being recorded) and not yet answered.",
    registry=REGISTRY,
)
shedding = Gauge(
    "openclaw_shedding",
    "1 while inbound messages are being refused as busy (within the last shedding window).",
    registry=REGISTRY,
)
inbound_shards_held = Gauge(
    "openclaw_inbound_shards_held",
    "Inbound stream shards this instance holds and reads (Redis store).",
    registry=REGISTRY,
)
inbound_reclaimed = Counter(
    "openclaw_inbound_reclaimed_total",
    "Inbound events taken over from a shard's previous holder when this instance acquired the shard.",
    registry=REGISTRY,
)
inbound_fenced = Counter(
    "openclaw_inbound_fenced_total",
    "Replies refused because their shard had passed to another instance (which answers instead).",
    registry=REGISTRY,
)
gateway_connections = Gauge(
    "openclaw_gateway_connections",
    "Open WebSocket connections on the gateway.",
    registry=REGISTRY,
)
gateway_inflight = Gauge(
    "openclaw_gateway_inflight_requests",
    "Gateway requests received and not yet answered.",
    registry=REGISTRY,
)
gateway_frame_errors = Counter(
    "openclaw_gateway_frame_errors_total",
    "Gateway frames refused, by error code.",
    ["code"],
    registry=REGISTRY,
)
gateway_auth_failures = Counter(
    "openclaw_gateway_auth_failures_total",
    "Gateway connections refused for a wrong or missing token.",
    registry=REGISTRY,
)
gateway_refused = Counter(
    "openclaw_gateway_refused_total",
    "Gateway connections or requests refused by a limit, by reason (too_many_connections, too_many_per_address, "
    "origin, handshake, rate_limited, send_queue_full).",
    ["reason"],
    registry=REGISTRY,
)
gateway_busy_holds = Counter(
    "openclaw_gateway_busy_holds_total",
    "Times a gateway connection was not read for 0.1 s: refused as busy past 100 a second (50 at once).",
    registry=REGISTRY,
)
gateway_send_paused = Counter(
    "openclaw_gateway_send_paused_total",
    "Times a gateway connection stopped being read because its replies queued past gateway.send_high_water.",
    registry=REGISTRY,
)
web_refused = Counter(
    "openclaw_web_refused_total",
    "Web requests or connections refused by a limit, by reason (body_too_large, request_timeout, "
    "too_many_connections, bad_transfer_encoding).",
    ["reason"],
    registry=REGISTRY,
)
# Every reason exists from the start, so increase() alerts see a zero first.
for _reason in ("too_many_connections", "too_many_per_address", "origin", "handshake", "rate_limited",
                "send_queue_full"):
    gateway_refused.labels(_reason)
for _reason in ("body_too_large", "request_timeout", "too_many_connections", "bad_transfer_encoding"):
    web_refused.labels(_reason)
heartbeat_last = Gauge(
    "openclaw_heartbeat_last_timestamp_seconds",
    "Unix time of the last heartbeat (0 before the first).",
    registry=REGISTRY,
)
draining = Gauge(
    "openclaw_draining",
    "1 while the daemon is draining for shutdown.",
    registry=REGISTRY,
)
ready = Gauge(
    "openclaw_ready",
    "1 once startup has completed and until draining begins.",
    registry=REGISTRY,
)
drain_abandoned = Counter(
    "openclaw_drain_abandoned_requests_total",
    "In-flight requests abandoned because the drain timeout passed.",
    registry=REGISTRY,
)
drain_abandoned_messages = Counter(
    "openclaw_drain_abandoned_messages_total",
    "Messages whose brain work a hurried drain abandoned; they stay durable and are answered after the next start.",
    registry=REGISTRY,
)
drain_undelivered = Counter(
    "openclaw_drain_undelivered_total",
    "Outbox messages still pending when a drain ended; they stay durable and are sent after the next start.",
    registry=REGISTRY,
)
drain_hurried = Counter(
    "openclaw_drain_hurried_total",
    "Services told to stop waiting during a drain (budget spent or a second signal), by service.",
    ["service"],
    registry=REGISTRY,
)
store_errors = Counter(
    "openclaw_store_errors_total",
    "Store operations that failed, by operation (record_inbound, complete_inbound, due_outbox, ...).",
    ["op"],
    registry=REGISTRY,
)
store_failing = Gauge(
    "openclaw_store_failing",
    "1 while the store's last write or read failed (/health and /readyz answer 503).",
    registry=REGISTRY,
)
config_reloads = Counter(
    "openclaw_config_reloads_total",
    "Configuration reloads (SIGHUP, systemctl reload, openclaw reload), by result: applied, rejected, unchanged.",
    ["result"],
    registry=REGISTRY,
)
state_saves = Counter(
    "openclaw_state_saves_total",
    "Writes of gateway-state.json, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
brain_tokens = Counter(
    "openclaw_brain_tokens_total",
    "Model tokens used, by provider and kind (input_tokens, output_tokens).",
    ["provider", "kind"],
    registry=REGISTRY,
)
outbox_pending = Gauge(
    "openclaw_outbox_pending",
    "Outbox messages waiting to be delivered (including those waiting for a retry).",
    registry=REGISTRY,
)
outbox_failed = Gauge(
    "openclaw_outbox_failed",
    "Outbox messages given up on after the last attempt.",
    registry=REGISTRY,
)
outbox_sent = Counter(
    "openclaw_outbox_sent_total",
    "Outbox messages delivered, by channel.",
    ["channel"],
    registry=REGISTRY,
)
outbox_gave_up = Counter(
    "openclaw_outbox_gave_up_total",
    "Outbox messages that exhausted their attempts, by channel.",
    ["channel"],
    registry=REGISTRY,
)
# Both outcomes exist from the start, so increase() alerts see a zero first.
for _outcome in ("ok", "error"):
    state_saves.labels(_outcome)


class RequestMetrics:
    """
    Per-source request metrics with label children bound once: the gateway
    counts every request, so a ``labels()`` lookup per request is wasted work.
    """

    def __init__(self, source: str, known_types: list[str]) -> None:
        self._source = source
        self._counters = {t: requests_total.labels(source, t) for t in known_types}
        self._other = requests_total.labels(source, "unknown")
        self.duration = response_duration.labels(source)

    def count(self, request_type: str) -> None:
        """Count one request; types outside the known set count as ``unknown``."""
        self._counters.get(request_type, self._other).inc()

# Connectors (docs/connectors.md)
connector_up = Gauge(
    "openclaw_connector_up",
    "1 while the connector is connected to its platform.",
    ["connector"],
    registry=REGISTRY,
)
connector_messages = Counter(
    "openclaw_connector_messages_total",
    "Chat messages through a connector, by direction (in, out).",
    ["connector", "direction"],
    registry=REGISTRY,
)
connector_send_failures = Counter(
    "openclaw_connector_send_failures_total",
    "Sends a connector's platform refused or that failed (the outbox retries them).",
    ["connector"],
    registry=REGISTRY,
)
connector_reconnects = Counter(
    "openclaw_connector_reconnects_total",
    "Connections torn down and retried, by reason (error, stall, closed).",
    ["connector", "reason"],
    registry=REGISTRY,
)
connector_refused = Counter(
    "openclaw_connector_refused_total",
    "Inbound messages that did not reach a brain, by reason (not_allowed, pairing, rate_limited, malformed, "
    "bad_signature, unauthorized).",
    ["connector", "reason"],
    registry=REGISTRY,
)

# The proactive engine (docs/heartbeat.md)
heartbeat_runs = Counter(
    "openclaw_heartbeat_runs_total",
    "Heartbeats run, by verdict (ok, acted, failed, skipped).",
    ["verdict"],
    registry=REGISTRY,
)
heartbeat_overdue = Gauge(
    "openclaw_heartbeat_overdue",
    "1 when no heartbeat has completed within twice the interval (the dead-man signal).",
    registry=REGISTRY,
)
check_up = Gauge(
    "openclaw_check_up",
    "1 while the check passes, 0 while it fails.",
    ["check"],
    registry=REGISTRY,
)
check_latency = Gauge(
    "openclaw_check_latency_seconds",
    "How long the check's last probe took.",
    ["check"],
    registry=REGISTRY,
)
alerts_total = Counter(
    "openclaw_alerts_total",
    "Alerts and recoveries sent, by check (or connector) and kind.",
    ["check", "kind"],
    registry=REGISTRY,
)
cron_runs = Counter(
    "openclaw_cron_runs_total",
    "Cron job runs, by job and outcome (ok, failed, interrupted, missed, skipped).",
    ["job", "outcome"],
    registry=REGISTRY,
)
mail_notified = Counter(
    "openclaw_mail_notified_total",
    "New mails seen, by mailbox and whether they were important enough to notify.",
    ["mailbox", "important"],
    registry=REGISTRY,
)
store_pruned = Counter(
    "openclaw_store_pruned_total",
    "Rows deleted by pruning (sent outbox rows, finished inbound events, journal records) past store.retention.",
    ["kind"],
    registry=REGISTRY,
)

# Several instances on one Redis (docs/deployment.md)
cluster_leases_held = Gauge(
    "openclaw_cluster_leases_held",
    "1 while this instance holds the lease (scheduler, connector:<platform>:<account>).",
    ["lease"],
    registry=REGISTRY,
)
cluster_takeovers = Counter(
    "openclaw_cluster_takeovers_total",
    "Leases this instance acquired that an earlier holder had had (a failover, a restart, a rebalance).",
    ["lease"],
    registry=REGISTRY,
)
cluster_lease_losses = Counter(
    "openclaw_cluster_lease_losses_total",
    "Leases this instance stopped holding other than by releasing them, by reason (expired, refused, fenced).",
    ["lease", "reason"],
    registry=REGISTRY,
)
cluster_fenced_writes = Counter(
    "openclaw_cluster_fenced_writes_total",
    "Guarded writes Redis refused because they carried a stale fencing token.",
    ["lease"],
    registry=REGISTRY,
)
http_fresh_retries = Counter(
    "openclaw_http_fresh_retries_total",
    "Requests sent again on a fresh connection after a reused pooled one failed them before any response byte "
    "(a server that closes connections between requests), by client.",
    ["client"],
    registry=REGISTRY,
)
http_check_refused = Counter(
    "openclaw_http_check_refused_total",
    "http_check requests refused before connecting, by reason (address, scheme, redirects).",
    ["reason"],
    registry=REGISTRY,
)
