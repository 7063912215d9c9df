"""Prometheus metrics of ``forewarn ingest`` (module-level, so every ingester in a process shares them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from forewarn.metrics import metric

RECORDS = metric(Counter, "forewarn_ingest_records_consumed", "Kafka records consumed", ["topic"])
BYTES = metric(Counter, "forewarn_ingest_bytes_consumed", "Kafka record value bytes consumed", ["topic"])
ROWS = metric(Counter, "forewarn_ingest_rows_inserted", "rows ClickHouse accepted, by table", ["table"])
BATCHES = metric(Counter, "forewarn_ingest_batches", "partition ranges inserted and committed", ["topic"])
POISON = metric(
    Counter,
    "forewarn_ingest_poison_records",
    "records that are not valid OTLP, sent to the dead-letter table",
    ["topic"],
)
REJECTED = metric(
    Counter, "forewarn_ingest_rejected_items", "invalid spans/points dropped by validation", ["topic"]
)
DUPLICATES = metric(
    Counter,
    "forewarn_ingest_duplicates_dropped",
    "records identical to one the group already kept within kafka.dedup_window_s (client re-sends), not stored",
    ["topic"],
)
ERRORS = metric(Counter, "forewarn_ingest_errors", "errors by kind (storage, commit, kafka)", ["kind"])
BATCH_SECONDS = metric(
    Histogram,
    "forewarn_ingest_batch_seconds",
    "time to insert and commit one round of partition ranges",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAG = metric(
    Gauge,
    "forewarn_ingest_consumer_lag",
    "records not yet committed: max(high watermark, last consumed + 1) - committed offset",
    ["topic", "partition"],
)
COMMITTED = metric(Gauge, "forewarn_ingest_committed_offset", "last committed offset", ["topic", "partition"])
PAUSED = metric(Gauge, "forewarn_ingest_paused", "1 while consumption is paused because storage is failing")
ASSIGNED = metric(Gauge, "forewarn_ingest_assigned_partitions", "partitions this ingester owns")
