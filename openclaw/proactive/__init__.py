"""The proactive engine: heartbeat, checks, cron, reports."""
