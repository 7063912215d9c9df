"""forewarn's own tables (beyond the OpenTelemetry exporter's), defined in the storage layer
that owns the schema, so migrations never import the components that write them."""

from __future__ import annotations

from forewarn.storage.schema import DEDUP_SETTINGS, Schema, Table

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


# --- 250-299: flows (signals, anomalies, incidents, checkpoints, models, feedback) ---
# ReplacingMergeTree on deterministic keys: a batch replayed after a crash rewrites the same
# rows, which is what makes the score flow exactly-once without transactions.
_M = "Map(LowCardinality(String), String)"
_RMT = {"index_granularity": "8192", **DEDUP_SETTINGS}
FLOW_TABLES: tuple[Table, ...] = (
    Table(
        "forewarn_signals",
        (
            ("series_id", "UInt64"),
            ("ts", "DateTime64(3)"),
            ("value", "Float64"),
            ("name", "LowCardinality(String)"),
            ("service", "LowCardinality(String)"),
            ("labels", _M),
        ),
        order_by="(name, series_id, ts)",
        partition_by="toDate(ts)",
        engine="ReplacingMergeTree",
        settings=_RMT,
        shard_key="cityHash64(service)",
    ),
    Table(
        "forewarn_series",
        (
            ("series_id", "UInt64"),
            ("name", "LowCardinality(String)"),
            ("service", "LowCardinality(String)"),
            ("labels", _M),
            ("first_seen", "DateTime64(3)"),
        ),
        order_by="series_id",
        engine="ReplacingMergeTree",
        settings=_RMT,
        shard_key="series_id",
    ),
    Table(
        "forewarn_cardinality",
        (
            ("window_end", "DateTime64(3)"),
            ("name", "LowCardinality(String)"),
            ("service", "LowCardinality(String)"),
            ("rejected_series", "UInt64"),
            ("rejected_points", "UInt64"),
            ("budget", "UInt64"),
        ),
        order_by="(window_end, name, service)",
        engine="ReplacingMergeTree",
        settings=_RMT,
    ),
    Table(
        "forewarn_latency_hist",
        (("service", "LowCardinality(String)"), ("ts", "DateTime64(3)"), ("bins", "Array(UInt64)")),
        order_by="(service, ts)",
        partition_by="toDate(ts)",
        engine="ReplacingMergeTree",
        settings=_RMT,
    ),
    Table(
        "forewarn_log_templates",
        (
            ("Timestamp", "DateTime64(9)"),
            ("ServiceName", "LowCardinality(String)"),
            ("log_key", "UInt64"),
            ("template_id", "UInt64"),
            ("SeverityNumber", "UInt8"),
        ),
        order_by="(ServiceName, Timestamp, log_key)",
        partition_by="toDate(Timestamp)",
        engine="ReplacingMergeTree",
        settings=_RMT,
        ttl_column="toDateTime(Timestamp)",
        ttl_signal="logs",
    ),
    Table(
        "forewarn_templates",
        (
            ("template_id", "UInt64"),
            ("service", "LowCardinality(String)"),
            ("template", "String"),
            ("first_seen", "DateTime64(9)"),
        ),
        order_by="(service, template_id)",
        engine="ReplacingMergeTree",
        settings=_RMT,
    ),
    Table(
        "anomalies",
        (
            ("anomaly_id", "UInt64"),
            ("run", "LowCardinality(String)"),
            ("ts", "DateTime64(3)"),
            ("detected_at", "DateTime64(3)"),
            ("series_id", "UInt64"),
            ("name", "LowCardinality(String)"),
            ("service", "LowCardinality(String)"),
            ("labels", _M),
            ("value", "Float64"),
            ("expected", "Float64"),
            ("score", "Float64"),
            ("detector", "LowCardinality(String)"),
            ("kind", "LowCardinality(String)"),
            ("explanation", "String"),
            ("incident_id", "UInt64"),
            ("model_version", "UInt32"),
        ),
        order_by="(run, anomaly_id)",
        partition_by="toYYYYMM(ts)",
        engine="ReplacingMergeTree",
        settings=_RMT,
    ),
    Table(
        "incidents",
        (
            ("incident_id", "UInt64"),
            ("run", "LowCardinality(String)"),
            ("started_at", "DateTime64(3)"),
            ("updated_at", "DateTime64(3)"),
            ("services", "Array(String)"),
            ("anomalies", "UInt32"),
            ("suspects", "String"),
            ("alert_labels", _M),
            ("resolved", "Bool"),
        ),
        order_by="(run, incident_id)",
        engine="ReplacingMergeTree(updated_at)",
        settings=_RMT,
    ),
    Table(
        "forewarn_flow_state",
        (
            ("key", "String"),
            ("watermark", "DateTime64(3)"),
            ("committed_at", "DateTime64(6)"),
            ("state", "String"),
        ),
        order_by="key",
        engine="ReplacingMergeTree(committed_at)",
        settings=_RMT,
    ),
    Table(
        "forewarn_models",
        (
            ("name", "LowCardinality(String)"),
            ("version", "UInt32"),
            ("created_at", "DateTime64(3)"),
            ("metadata", "String"),
            ("blob", "String"),
        ),
        order_by="(name, version)",
        engine="ReplacingMergeTree",
        settings=_RMT,
    ),
    Table(
        "forewarn_feedback",
        (
            ("anomaly_id", "UInt64"),
            ("series_id", "UInt64"),
            ("detector", "String"),
            ("label", "LowCardinality(String)"),
            ("at", "DateTime64(3)"),
            ("note", "String"),
        ),
        order_by="(series_id, anomaly_id, at)",
        engine="ReplacingMergeTree",
        settings=_RMT,
    ),
)


# --- 260: SLOs. Good and total events per SLI and short bucket, counted once by the SLO flow, so
# an SLO window of 30 days is a sum over a few ten thousand rows instead of a scan of the spans.
# ``sli_key`` is the SLO id plus a digest of its queries: a changed query starts a new series.
SLO_BUCKETS = Table(
    "forewarn_slo_buckets",
    (
        ("sli_key", "LowCardinality(String)"),
        ("ts", "DateTime64(3)"),
        ("good", "Float64"),
        ("total", "Float64"),
    ),
    order_by="(sli_key, ts)",
    partition_by="toYYYYMM(ts)",
    engine="ReplacingMergeTree",
    ttl_column="toDateTime(ts)",
    settings={**_RMT, "ttl_only_drop_parts": "1"},
    shard_key="cityHash64(sli_key)",
)
# days kept: the longest window (31 days) and the forecast's two weeks of history fit in the
# buckets' 90; the evaluations stay a year and a month for the dashboards
SLO_BUCKETS_TTL_DAYS, SLO_STATUS_TTL_DAYS = 90, 400
# Each SLO's evaluation by the flow (one row per run, per SLO): what dashboards and
# `forewarn slo status` history show; burn rates per alert window, inf = never for the forecast.
SLO_STATUS = Table(
    "forewarn_slo_status",
    (
        ("slo_id", "LowCardinality(String)"),
        ("ts", "DateTime64(3)"),
        ("service", "LowCardinality(String)"),
        ("sli_key", "LowCardinality(String)"),
        ("objective", "Float64"),
        ("good", "Float64"),
        ("total", "Float64"),
        ("budget_remaining", "Float64"),
        ("burn", "Map(LowCardinality(String), Float64)"),
        ("firing", "Array(LowCardinality(String))"),
        ("eta_s", "Float64"),
        ("eta_low_s", "Float64"),
        ("eta_high_s", "Float64"),
    ),
    order_by="(slo_id, ts)",
    partition_by="toYYYYMM(ts)",
    engine="ReplacingMergeTree",
    ttl_column="toDateTime(ts)",
    settings={**_RMT, "ttl_only_drop_parts": "1"},
    shard_key="cityHash64(slo_id)",
)


# --- 300-399: Kafka ingest ---
# forewarn_ingest_batches records each partition range an ingester is about to insert, before the
# insert: a replay after a crash re-forms exactly these ranges, so their deduplication tokens
# match and ClickHouse drops the repeated insert. Dead letters keep records that are not OTLP.
INGEST_TABLES: tuple[Table, ...] = (
    Table(
        "forewarn_ingest_batches",
        (
            ("group_id", "LowCardinality(String)"),
            ("topic", "LowCardinality(String)"),
            ("partition", "UInt32"),
            ("first_offset", "Int64"),
            ("last_offset", "Int64"),
            ("planned_at", "DateTime64(3) DEFAULT now64(3)"),
            ("isolated", "UInt8 DEFAULT 0"),  # 1: inserted record by record (see collector/ingest.py)
            ("dropped", "Array(Int64) DEFAULT []"),  # offsets not inserted: duplicates of earlier records
            # the records it keeps, for content deduplication: forewarn_ingest_seen_mv copies them
            # into forewarn_ingest_seen by the same insert that makes the plan durable
            ("kept_offsets", "Array(Int64) DEFAULT []"),
            ("kept_hashes", "Array(UInt128) DEFAULT []"),
        ),
        order_by="(group_id, topic, partition, first_offset)",
        engine="ReplacingMergeTree",
        ttl_column="toDateTime(planned_at)",
        shard_key="cityHash64(topic, partition)",
    ),
    Table(
        "forewarn_ingest_dead_letters",
        (
            ("received_at", "DateTime64(3) DEFAULT now64(3)"),
            ("topic", "LowCardinality(String)"),
            ("partition", "UInt32"),
            ("offset", "Int64"),
            ("error", "String"),
            ("value", "String CODEC(ZSTD(1))"),
        ),
        order_by="(topic, partition, offset)",
        engine="ReplacingMergeTree",
        ttl_column="toDateTime(received_at)",
        shard_key="cityHash64(topic, partition)",
    ),
)

# One row per record kept by a planned range (written by the plan's own insert, through
# forewarn_ingest_seen_mv), so a later identical record (a client's re-send after a lost answer)
# anywhere in the group is recognised and dropped.
# Lookups filter on seen_at >= now - kafka.dedup_window_s; hourly partitions keep them to the window,
# and whole hours are dropped after a day (the window's upper bound).
INGEST_SEEN = Table(
    "forewarn_ingest_seen",
    (
        ("group_id", "LowCardinality(String)"),
        ("topic", "LowCardinality(String)"),
        ("hash", "UInt128"),  # blake2b-128 of the record value
        ("partition", "UInt32"),
        ("offset", "Int64"),
        ("seen_at", "DateTime64(3) DEFAULT now64(3)"),
    ),
    order_by="(group_id, topic, hash, partition, offset)",
    partition_by="toStartOfHour(seen_at)",
    engine="ReplacingMergeTree",
    ttl_column="toDateTime(seen_at)",
    settings={"index_granularity": "1024", "ttl_only_drop_parts": "1"},
    shard_key="cityHash64(hash)",
)


def seen_view_ddl(schema: Schema) -> str:
    """Copies the kept records of each plan into forewarn_ingest_seen, in the plan's own insert: a
    seen row never exists without its plan. On a cluster it runs on each node's local tables."""
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {schema.fq(schema.local_name('forewarn_ingest_seen_mv'))}"
        f"{schema.on_cluster()} TO {schema.fq(schema.local_name(INGEST_SEEN.name))} AS\n"
        "SELECT group_id, topic, hash, partition, offset, planned_at AS seen_at\n"
        f"FROM {schema.fq(schema.local_name('forewarn_ingest_batches'))}\n"
        "ARRAY JOIN kept_hashes AS hash, kept_offsets AS offset"
    )


# --- 2-99 (telemetry): the direct path's re-send deduplication (collector/resend_dedup.py) ---
# Every row the collector inserts carries the id of its insert group in a hidden column
# (MATERIALIZED: not in SELECT *, not needed by positional or named inserts of other writers), so
# whether a group's rows are in a table is a fact of the table itself, atomic with the rows.
BATCH_COLUMN = "_forewarn_batch"
BATCH_COLUMN_TYPE = "UInt128 MATERIALIZED 0 CODEC(ZSTD(1))"
BATCH_INDEX = f"idx{BATCH_COLUMN} {BATCH_COLUMN} TYPE minmax GRANULARITY 1"  # ids are time-ordered

# One row per request the direct path planned to insert, written before the group's rows: which
# group should hold it and how many rows that group writes per table. Lookups filter on
# seen_at >= now - collector.dedup_window_s; hourly partitions keep them to the window, and whole
# hours are dropped after a day (the window's upper bound).
COLLECTOR_SEEN = Table(
    "forewarn_collector_seen",
    (
        ("signal", "LowCardinality(String)"),
        ("hash", "UInt128"),  # blake2b-128 of the request bytes, as on the Kafka path
        ("batch", "UInt128"),  # the insert group (BATCH_COLUMN of its rows)
        ("rows", "Map(LowCardinality(String), UInt64)"),  # rows the group writes, per table
        ("seen_at", "DateTime64(3) DEFAULT now64(3)"),
    ),
    order_by="(signal, hash, batch)",
    partition_by="toStartOfHour(seen_at)",
    engine="ReplacingMergeTree",
    ttl_column="toDateTime(seen_at)",
    # packed parts (one file each): a plan is a few rows written once per group commit, and a part
    # of many small files costs 3x the CPU to write (measured: 12.7 vs 4.1 ms per plan in chDB)
    settings={
        "index_granularity": "1024",
        "ttl_only_drop_parts": "1",
        "min_bytes_for_full_part_storage": "1073741824",
    },
    shard_key="cityHash64(hash)",
)
