"""forewarn's own tables (beyond the OpenTelemetry exporter's), defined in the storage layer
that owns the schema, so migrations never import the components that write them."""

from __future__ import annotations

from forewarn.storage.schema import Table

# The record of what automation did (alerts.remediation writes it); kept forever.
AUDIT_TABLE = "forewarn_remediation_audit"
AUDIT = Table(
    name=AUDIT_TABLE,
    columns=(
        ("event_time", "DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1))"),
        ("seq", "UInt64 CODEC(Delta, ZSTD(1))"),
        ("event", "LowCardinality(String)"),
        ("outcome", "LowCardinality(String)"),
        ("reason", "String CODEC(ZSTD(1))"),
        ("hook", "LowCardinality(String)"),
        ("kind", "LowCardinality(String)"),
        ("action_id", "String CODEC(ZSTD(1))"),
        ("idempotency_key", "String CODEC(ZSTD(1))"),
        ("group_key", "String CODEC(ZSTD(1))"),
        ("receiver", "LowCardinality(String)"),
        ("alertname", "LowCardinality(String)"),
        ("fingerprints", "Array(String) CODEC(ZSTD(1))"),
        ("labels", "Map(LowCardinality(String), String) CODEC(ZSTD(1))"),
        ("method", "LowCardinality(String)"),
        ("url", "String CODEC(ZSTD(1))"),
        ("attempt", "UInt16"),
        ("status_code", "UInt16"),
        ("latency_ms", "Float64"),
        ("error", "String CODEC(ZSTD(1))"),
        ("dry_run", "Bool"),
        ("approval_state", "LowCardinality(String)"),
        ("actor", "String"),
        ("comment", "String CODEC(ZSTD(1))"),
        ("breaker_state", "LowCardinality(String)"),
    ),
    order_by="(hook, event_time, seq)",
    partition_by="toDate(event_time)",
    settings={"index_granularity": "8192", "non_replicated_deduplication_window": "1000"},
    shard_key="cityHash64(action_id)",
)
