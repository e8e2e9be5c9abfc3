"""
A check's last day from its journal records, small enough for a browser:
latency in at most ``BUCKETS`` slots (the slowest result in each, and
whether any failed) and the incidents (runs of failed results).
"""

from __future__ import annotations

from typing import Any, Iterable

BUCKETS = 96
DAY = 86400.0


def history(rows: Iterable[dict[str, Any]], start: float, end: float, buckets: int = BUCKETS) -> dict[str, Any]:
    """
    ``rows``: ``check`` journal records (oldest first).  :return: per check
    name ``{points: [[slot_start, latency|None, ok|None], ...], incidents:
    [{start, end|None, failures}]}``; ``end`` is None while still failing.
    """
    width = max(end - start, 1.0) / buckets
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        payload, t = row["payload"], row["timestamp"]
        name = payload.get("check")
        if not isinstance(name, str) or not start <= t <= end:
            continue
        entry = found.setdefault(name, {"slots": [None] * buckets, "incidents": []})
        slot = min(int((t - start) / width), buckets - 1)
        ok, latency = bool(payload.get("ok")), float(payload.get("latency") or 0.0)
        seen = entry["slots"][slot]
        entry["slots"][slot] = (latency, ok) if seen is None else (max(seen[0], latency), seen[1] and ok)
        incidents = entry["incidents"]
        if not ok:
            if incidents and incidents[-1]["end"] is None:
                incidents[-1]["failures"] += 1
            else:
                incidents.append({"start": t, "end": None, "failures": 1})
        elif incidents and incidents[-1]["end"] is None:
            incidents[-1]["end"] = t
    return {name: {
        "points": [[round(start + i * width, 3), *(slot if slot is not None else (None, None))]
                   for i, slot in enumerate(entry["slots"])],
        "incidents": entry["incidents"],
    } for name, entry in found.items()}
