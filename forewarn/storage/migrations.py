"""Versioned, idempotent schema migrations recorded in ``forewarn_schema_migrations``.

Every statement is idempotent (``IF NOT EXISTS``), so two processes migrating at once, or a
migration interrupted half-way, converge. Version ranges keep components apart:
1-99 telemetry tables, 100-199 alerts, 200-299 detectors and flows, 300-399 ingest.
TTL is not a migration: it follows the configuration on every run, existing tables included.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from forewarn.config import TTLSettings
from forewarn.storage.schema import DEDUP_SETTINGS, TABLES, Schema, Table, q
from forewarn.storage.tables import AUDIT

log = logging.getLogger(__name__)
MIGRATIONS_TABLE = "forewarn_schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[Schema, TTLSettings], list[str]]

    def checksum(self, schema: Schema, ttl: TTLSettings) -> str:
        return hashlib.sha256("\n;\n".join(self.statements(schema, ttl)).encode()).hexdigest()[:16]


def _v1_otel_tables(schema: Schema, ttl: TTLSettings) -> list[str]:
    stmts: list[str] = []
    for t in TABLES.values():
        stmts += schema.create_table(t, getattr(ttl, t.ttl_signal) if t.ttl_signal else 0)
    stmts.append(schema.create_trace_id_ts_mv())
    return stmts


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


def _v250_flows_tables(schema: Schema, ttl: TTLSettings) -> list[str]:
    stmts: list[str] = []
    for t in FLOW_TABLES:
        stmts += schema.create_table(t, getattr(ttl, t.ttl_signal) if t.ttl_signal else 0)
    return stmts


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


def _v300_ingest_tables(schema: Schema, ttl: TTLSettings) -> list[str]:
    return [s for t in INGEST_TABLES for s in schema.create_table(t, 7 if t.name.endswith("batches") else 30)]


def _v150_remediation_audit(schema: Schema, ttl: TTLSettings) -> list[str]:
    return schema.create_table(AUDIT)


MIGRATIONS: list[Migration] = [
    Migration(1, "OpenTelemetry exporter tables", _v1_otel_tables),
    Migration(150, "remediation audit table", _v150_remediation_audit),
    Migration(250, "flows: signals, anomalies, incidents, checkpoints, models, feedback", _v250_flows_tables),
    Migration(300, "ingest: batch plans and dead letters", _v300_ingest_tables),
]


def _migrations_table_ddl(schema: Schema) -> str:
    engine = "ReplacingMergeTree(applied_at)"
    if schema.cluster:
        engine = (
            f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{schema.database}/"
            f"{MIGRATIONS_TABLE}', '{{replica}}', applied_at)"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS {schema.fq(MIGRATIONS_TABLE)}{schema.on_cluster()} "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3) DEFAULT now64(3)) "
        f"ENGINE = {engine} ORDER BY version"
    )


def applied_versions(client: Client, schema: Schema) -> set[int]:
    rows = client.query(f"SELECT DISTINCT version FROM {schema.fq(MIGRATIONS_TABLE)}").result_rows
    return {int(r[0]) for r in rows}


def migrate(client: Client, schema: Schema, ttl: TTLSettings) -> list[Migration]:
    """Apply pending migrations in version order, then bring every table's TTL to the config."""
    client.command(schema.create_database())
    client.command(_migrations_table_ddl(schema))
    done = applied_versions(client, schema)
    applied = []
    for m in sorted(MIGRATIONS, key=lambda m: m.version):
        if m.version in done:
            continue
        log.info("applying migration %d: %s", m.version, m.name)
        for stmt in m.statements(schema, ttl):
            client.command(stmt)
        client.insert(
            MIGRATIONS_TABLE,
            [[m.version, m.name, m.checksum(schema, ttl)]],
            column_names=["version", "name", "checksum"],
            database=schema.database,
        )
        applied.append(m)
    apply_ttl(client, schema, ttl)
    return applied


_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)", re.S)


def current_ttl_days(client: Client, schema: Schema, table: str) -> int:
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": schema.database, "t": schema.local_name(table)},
    ).result_rows
    if not rows:
        return -1
    m = _TTL_DAYS.search(rows[0][0])
    return int(m.group(1)) if m else 0


def apply_ttl(client: Client, schema: Schema, ttl: TTLSettings) -> list[str]:
    """Alter only tables whose TTL differs, so a restart does not re-materialise TTL needlessly."""
    changed = []
    for t in TABLES.values():
        if not t.ttl_signal:
            continue
        want = int(getattr(ttl, t.ttl_signal))
        have = current_ttl_days(client, schema, t.name)
        if have < 0 or have == want:
            continue
        log.info("TTL of %s: %s -> %s days", t.name, have or "none", want or "none")
        client.command(schema.modify_ttl(t, want))
        changed.append(t.name)
    return changed


__all__ = ["MIGRATIONS", "MIGRATIONS_TABLE", "Migration", "apply_ttl", "migrate", "q"]
