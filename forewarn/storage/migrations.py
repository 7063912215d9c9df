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
from forewarn.storage.schema import SIGNAL_TABLES, TABLES, Schema, q
from forewarn.storage.tables import (
    AUDIT,
    BATCH_COLUMN,
    BATCH_COLUMN_TYPE,
    BATCH_INDEX,
    COLLECTOR_SEEN,
    FLOW_TABLES,
    INGEST_SEEN,
    INGEST_TABLES,
    SLO_BUCKETS,
    SLO_BUCKETS_TTL_DAYS,
    SLO_STATUS,
    SLO_STATUS_TTL_DAYS,
    seen_view_ddl,
)

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


def _v2_resend_dedup(schema: Schema, ttl: TTLSettings) -> list[str]:
    """The hidden group id on every row the collector writes, and the requests it planned."""
    stmts: list[str] = []
    for name in (n for names in SIGNAL_TABLES.values() for n in names):
        local = schema.fq(schema.local_name(name))
        stmts.append(
            f"ALTER TABLE {local}{schema.on_cluster()} ADD COLUMN IF NOT EXISTS {q(BATCH_COLUMN)} {BATCH_COLUMN_TYPE}"
        )
        stmts.append(f"ALTER TABLE {local}{schema.on_cluster()} ADD INDEX IF NOT EXISTS {BATCH_INDEX}")
        if schema.cluster:  # inserts go through the Distributed table: it needs the column too
            stmts.append(
                f"ALTER TABLE {schema.fq(name)}{schema.on_cluster()} "
                f"ADD COLUMN IF NOT EXISTS {q(BATCH_COLUMN)} {BATCH_COLUMN_TYPE}"
            )
    return stmts + schema.create_table(COLLECTOR_SEEN, 1)


def _v250_flows_tables(schema: Schema, ttl: TTLSettings) -> list[str]:
    stmts: list[str] = []
    for t in FLOW_TABLES:
        stmts += schema.create_table(t, getattr(ttl, t.ttl_signal) if t.ttl_signal else 0)
    return stmts


def _v260_slo_buckets(schema: Schema, ttl: TTLSettings) -> list[str]:
    return schema.create_table(SLO_BUCKETS, SLO_BUCKETS_TTL_DAYS) + schema.create_table(
        SLO_STATUS, SLO_STATUS_TTL_DAYS
    )


def _v300_ingest_tables(schema: Schema, ttl: TTLSettings) -> list[str]:
    return [s for t in INGEST_TABLES for s in schema.create_table(t, 7 if t.name.endswith("batches") else 30)]


def _v301_isolated_ranges(schema: Schema, ttl: TTLSettings) -> list[str]:
    (plans,) = (t for t in INGEST_TABLES if t.name == "forewarn_ingest_batches")
    return schema.add_column(plans, "isolated")


def _v302_ingest_dedup(schema: Schema, ttl: TTLSettings) -> list[str]:
    (plans,) = (t for t in INGEST_TABLES if t.name == "forewarn_ingest_batches")
    return schema.add_column(plans, "dropped") + schema.create_table(INGEST_SEEN, 1)


def _v303_seen_by_plans(schema: Schema, ttl: TTLSettings) -> list[str]:
    (plans,) = (t for t in INGEST_TABLES if t.name == "forewarn_ingest_batches")
    added = schema.add_column(plans, "kept_offsets") + schema.add_column(plans, "kept_hashes")
    return [*added, seen_view_ddl(schema)]


def _v150_remediation_audit(schema: Schema, ttl: TTLSettings) -> list[str]:
    return schema.create_table(AUDIT)


MIGRATIONS: list[Migration] = [
    Migration(1, "OpenTelemetry exporter tables", _v1_otel_tables),
    Migration(2, "collector: insert group id on rows; requests planned (re-send dedup)", _v2_resend_dedup),
    Migration(150, "remediation audit table", _v150_remediation_audit),
    Migration(250, "flows: signals, anomalies, incidents, checkpoints, models, feedback", _v250_flows_tables),
    Migration(260, "SLOs: good and total events per SLI and bucket; each evaluation", _v260_slo_buckets),
    Migration(300, "ingest: batch plans and dead letters", _v300_ingest_tables),
    Migration(301, "ingest: plans record ranges inserted record by record", _v301_isolated_ranges),
    Migration(302, "ingest: plans record dropped duplicates; records seen by the group", _v302_ingest_dedup),
    Migration(303, "ingest: the plan's insert records its kept records as seen", _v303_seen_by_plans),
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
