"""The router's Prometheus metrics, module-level so several routers in one process share them.

``forewarn.metrics.metric`` keeps them valid when the module is imported twice.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from forewarn.metrics import metric

RECEIVED = metric(Counter, "forewarn_alerts_received", "Alerts received through the API", ("status",))
INVALID = metric(Counter, "forewarn_alerts_invalid", "Alerts rejected by validation")
NOTIFICATIONS = metric(Counter, "forewarn_alerts_notifications", "Notifications sent", ("integration",))
NOTIFY_FAILED = metric(
    Counter, "forewarn_alerts_notifications_failed", "Notification attempts that failed", ("integration",)
)
NOTIFY_LATENCY = metric(
    Histogram,
    "forewarn_alerts_notification_latency_seconds",
    "Duration of one notification attempt",
    ("integration",),
)
FLUSH_LAG = metric(
    Histogram,
    "forewarn_alerts_flush_lag_seconds",
    "How late a group flush ran after its timer was due",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
