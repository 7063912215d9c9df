"""The router's Prometheus metrics, module-level so several routers in one process share them.

Lookup-before-create keeps them valid when the module is imported twice (pytest's doctest
collection imports ``alerts/...`` both as a file and as ``forewarn.alerts``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram


def _metric(cls: type, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    existing = REGISTRY._names_to_collectors.get(name)  # no public lookup in prometheus-client
    return existing if existing is not None else cls(name, doc, list(labels), **kw)


RECEIVED = _metric(Counter, "forewarn_alerts_received", "Alerts received through the API", ("status",))
INVALID = _metric(Counter, "forewarn_alerts_invalid", "Alerts rejected by validation")
NOTIFICATIONS = _metric(Counter, "forewarn_alerts_notifications", "Notifications sent", ("integration",))
NOTIFY_FAILED = _metric(
    Counter, "forewarn_alerts_notifications_failed", "Notification attempts that failed", ("integration",)
)
NOTIFY_LATENCY = _metric(
    Histogram,
    "forewarn_alerts_notification_latency_seconds",
    "Duration of one notification attempt",
    ("integration",),
)
FLUSH_LAG = _metric(
    Histogram,
    "forewarn_alerts_flush_lag_seconds",
    "How late a group flush ran after its timer was due",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
