"""The collector's own Prometheus metrics (``forewarn_collector_*``), served on ``/metrics``.

Module-level objects in the default registry, so every part of the collector counts into the
same series and a scrape sees the whole process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from forewarn.metrics import metric

RECEIVED = metric(
    Counter,
    "forewarn_collector_received_items",
    "Spans, data points and log records received, before validation.",
    ["signal", "transport"],
)
ACCEPTED = metric(
    Counter,
    "forewarn_collector_accepted_items",
    "Items committed to the exporter and acknowledged to the client.",
    ["signal"],
)
REJECTED = metric(
    Counter,
    "forewarn_collector_rejected_items",
    "Items not stored, by reason (invalid, bad_request, overloaded, unavailable, unauthenticated, too_large).",
    ["signal", "reason"],
)
REQUESTS = metric(
    Counter,
    "forewarn_collector_requests",
    "Export requests answered, by transport and status (HTTP code or gRPC status name).",
    ["transport", "signal", "status"],
)
BATCH_PAYLOADS = metric(
    Histogram,
    "forewarn_collector_batch_requests",
    "Client requests committed together in one export (group commit).",
    ["signal"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
BATCH_BYTES = metric(
    Histogram,
    "forewarn_collector_batch_bytes",
    "Serialized bytes per export batch.",
    ["signal"],
    buckets=tuple(2**k for k in range(10, 27, 2)),
)
EXPORT_SECONDS = metric(
    Histogram,
    "forewarn_collector_export_seconds",
    "Time to make one batch durable (insert latency), by outcome.",
    ["signal", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_BYTES = metric(Gauge, "forewarn_collector_queue_bytes", "Payload bytes queued or being exported.")
QUEUE_REQUESTS = metric(
    Gauge, "forewarn_collector_queue_requests", "Requests waiting for their batch to be durable."
)
EXPORTER_READY = metric(Gauge, "forewarn_collector_exporter_ready", "1 when the exporter accepts data.")
RESENDS = metric(
    Counter,
    "forewarn_collector_resent_requests",
    "Requests identical to one planned within collector.dedup_window_s, by outcome: skipped (all its "
    "rows were stored), completed (only the tables it lacked were written), stored (none of it was "
    "stored: written in full), same_batch (a copy inside one batch, stored once).",
    ["signal", "outcome"],
)
DEDUP_ERRORS = metric(
    Counter,
    "forewarn_collector_dedup_errors",
    "Re-send lookups, checks or plans that failed, by stage; the requests were stored anyway.",
    ["stage"],
)
MEMORY_BYTES = metric(
    Gauge,
    "forewarn_collector_memory_bytes",
    "Anonymous resident memory of the collector process, as collector.memory_limit_mib bounds it.",
)
