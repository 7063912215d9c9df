"""DDL for the OpenTelemetry ClickHouse exporter schema, single-node or cluster.

Column names and types are the storage contract (Grafana's OTel mode and users' SQL rely on
them); engines, keys, codecs and TTL are ours. With a cluster, each table becomes a
``<name>_local`` Replicated table on every node plus a Distributed table under the contract
name, so queries and inserts keep using ``otel_traces`` and friends.

>>> ddl = Schema("otel").create_table(TABLES["otel_traces"])
>>> ddl[0].startswith("CREATE TABLE IF NOT EXISTS `otel`.`otel_traces`")
True
>>> cl = Schema("otel", cluster="prod").create_table(TABLES["otel_traces"])
>>> [s.split("(")[0].strip() for s in cl]  # doctest: +NORMALIZE_WHITESPACE
['CREATE TABLE IF NOT EXISTS `otel`.`otel_traces_local` ON CLUSTER `prod`',
 'CREATE TABLE IF NOT EXISTS `otel`.`otel_traces` ON CLUSTER `prod` AS `otel`.`otel_traces_local` ENGINE = Distributed']
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAP = "Map(LowCardinality(String), String)"
Z = "CODEC(ZSTD(1))"
DT9 = "DateTime64(9)"


@dataclass(frozen=True)
class Table:
    """One logical table: its contract columns and how we store them."""

    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: str
    partition_by: str | None = None
    ttl_column: str | None = None  # DateTime expression the TTL counts from
    ttl_signal: str | None = None  # which TTLSettings field governs it
    indexes: tuple[str, ...] = ()
    engine: str = "MergeTree"
    engine_args: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    shard_key: str = "rand()"


def _metric_common() -> tuple[tuple[str, str], ...]:
    return (
        ("ResourceAttributes", f"{MAP} {Z}"),
        ("ResourceSchemaUrl", f"String {Z}"),
        ("ScopeName", f"String {Z}"),
        ("ScopeVersion", f"String {Z}"),
        ("ScopeAttributes", f"{MAP} {Z}"),
        ("ScopeDroppedAttrCount", f"UInt32 {Z}"),
        ("ScopeSchemaUrl", f"String {Z}"),
        ("ServiceName", f"LowCardinality(String) {Z}"),
        ("MetricName", f"String {Z}"),
        ("MetricDescription", f"String {Z}"),
        ("MetricUnit", f"String {Z}"),
        ("Attributes", f"{MAP} {Z}"),
        ("StartTimeUnix", f"{DT9} CODEC(Delta, ZSTD(1))"),
        ("TimeUnix", f"{DT9} CODEC(Delta, ZSTD(1))"),
    )


EXEMPLARS = (
    "Exemplars",
    f"Nested(FilteredAttributes {MAP}, TimeUnix {DT9}, Value Float64, SpanId String, TraceId String) {Z}",
)

# Content-identical inserts within this many recent blocks are dropped: replays of the same
# batch (a retried group commit, a re-consumed Kafka range with the same dedup token) land once.
DEDUP_SETTINGS = {"non_replicated_deduplication_window": "1000"}
COMMON_SETTINGS = {"index_granularity": "8192", "ttl_only_drop_parts": "1", **DEDUP_SETTINGS}

_ATTR_INDEXES = (
    "INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
    "INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
)


def _metric_table(name: str, point_columns: tuple[tuple[str, str], ...]) -> Table:
    return Table(
        name=name,
        columns=_metric_common() + point_columns,
        order_by="(ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))",
        partition_by="toDate(TimeUnix)",
        ttl_column="toDateTime(TimeUnix)",
        ttl_signal="metrics",
        indexes=(
            *_ATTR_INDEXES,
            "INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        ),
        settings=COMMON_SETTINGS,
    )


_TABLE_LIST = (
    Table(
        name="otel_traces",
        columns=(
            ("Timestamp", f"{DT9} CODEC(Delta, ZSTD(1))"),
            ("TraceId", f"String {Z}"),
            ("SpanId", f"String {Z}"),
            ("ParentSpanId", f"String {Z}"),
            ("TraceState", f"String {Z}"),
            ("SpanName", f"LowCardinality(String) {Z}"),
            ("SpanKind", f"LowCardinality(String) {Z}"),
            ("ServiceName", f"LowCardinality(String) {Z}"),
            ("ResourceAttributes", f"{MAP} {Z}"),
            ("ScopeName", f"String {Z}"),
            ("ScopeVersion", f"String {Z}"),
            ("SpanAttributes", f"{MAP} {Z}"),
            ("Duration", f"UInt64 {Z}"),
            ("StatusCode", f"LowCardinality(String) {Z}"),
            ("StatusMessage", f"String {Z}"),
            ("Events", f"Nested(Timestamp {DT9}, Name LowCardinality(String), Attributes {MAP}) {Z}"),
            (
                "Links",
                f"Nested(TraceId String, SpanId String, TraceState String, Attributes {MAP}) {Z}",
            ),
        ),
        order_by="(ServiceName, SpanName, toDateTime(Timestamp))",
        partition_by="toDate(Timestamp)",
        ttl_column="toDateTime(Timestamp)",
        ttl_signal="traces",
        indexes=(
            "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
            *_ATTR_INDEXES,
            "INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_duration Duration TYPE minmax GRANULARITY 1",
        ),
        settings=COMMON_SETTINGS,
        shard_key="cityHash64(TraceId)",
    ),
    Table(
        name="otel_traces_trace_id_ts",
        columns=(
            ("TraceId", f"String {Z}"),
            ("Start", "DateTime CODEC(Delta, ZSTD(1))"),
            ("End", "DateTime CODEC(Delta, ZSTD(1))"),
        ),
        order_by="(TraceId, Start)",
        partition_by="toDate(Start)",
        ttl_column="Start",
        ttl_signal="traces",
        indexes=("INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1",),
        settings=COMMON_SETTINGS,  # dedup too: a replayed insert into otel_traces replays the view
        shard_key="cityHash64(TraceId)",
    ),
    Table(
        name="otel_logs",
        columns=(
            ("Timestamp", f"{DT9} CODEC(Delta, ZSTD(1))"),
            ("TraceId", f"String {Z}"),
            ("SpanId", f"String {Z}"),
            ("TraceFlags", "UInt8"),
            ("SeverityText", f"LowCardinality(String) {Z}"),
            ("SeverityNumber", "UInt8"),
            ("ServiceName", f"LowCardinality(String) {Z}"),
            ("Body", f"String {Z}"),
            ("ResourceSchemaUrl", f"LowCardinality(String) {Z}"),
            ("ResourceAttributes", f"{MAP} {Z}"),
            ("ScopeSchemaUrl", f"LowCardinality(String) {Z}"),
            ("ScopeName", f"String {Z}"),
            ("ScopeVersion", f"LowCardinality(String) {Z}"),
            ("ScopeAttributes", f"{MAP} {Z}"),
            ("LogAttributes", f"{MAP} {Z}"),
            ("EventName", f"String {Z}"),
        ),
        order_by="(toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)",
        partition_by="toDate(Timestamp)",
        ttl_column="toDateTime(Timestamp)",
        ttl_signal="logs",
        indexes=(
            "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
            *_ATTR_INDEXES,
            "INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8",
        ),
        settings=COMMON_SETTINGS,
    ),
    _metric_table(
        "otel_metrics_gauge",
        (("Value", "Float64"), ("Flags", "UInt32"), EXEMPLARS),
    ),
    _metric_table(
        "otel_metrics_sum",
        (
            ("Value", "Float64"),
            ("Flags", "UInt32"),
            EXEMPLARS,
            ("AggregationTemporality", "Int32"),
            ("IsMonotonic", "Bool"),
        ),
    ),
    _metric_table(
        "otel_metrics_histogram",
        (
            ("Count", "UInt64"),
            ("Sum", "Float64"),
            ("BucketCounts", "Array(UInt64)"),
            ("ExplicitBounds", "Array(Float64)"),
            EXEMPLARS,
            ("Flags", "UInt32"),
            ("Min", "Float64"),
            ("Max", "Float64"),
            ("AggregationTemporality", "Int32"),
        ),
    ),
    _metric_table(
        "otel_metrics_exponential_histogram",
        (
            ("Count", "UInt64"),
            ("Sum", "Float64"),
            ("Scale", "Int32"),
            ("ZeroCount", "UInt64"),
            ("PositiveOffset", "Int32"),
            ("PositiveBucketCounts", "Array(UInt64)"),
            ("NegativeOffset", "Int32"),
            ("NegativeBucketCounts", "Array(UInt64)"),
            EXEMPLARS,
            ("Flags", "UInt32"),
            ("Min", "Float64"),
            ("Max", "Float64"),
            ("AggregationTemporality", "Int32"),
        ),
    ),
    _metric_table(
        "otel_metrics_summary",
        (
            ("Count", "UInt64"),
            ("Sum", "Float64"),
            ("ValueAtQuantiles", "Nested(Quantile Float64, Value Float64)"),
            ("Flags", "UInt32"),
        ),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in _TABLE_LIST}
SIGNAL_TABLES: dict[str, tuple[str, ...]] = {
    "traces": ("otel_traces",),
    "logs": ("otel_logs",),
    "metrics": tuple(n for n in TABLES if n.startswith("otel_metrics_")),
}


def q(name: str) -> str:
    """Quote an identifier for ClickHouse SQL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True)
class Schema:
    """Renders DDL for one database, optionally on a cluster."""

    database: str
    cluster: str | None = None

    def on_cluster(self) -> str:
        return f" ON CLUSTER {q(self.cluster)}" if self.cluster else ""

    def local_name(self, table: str) -> str:
        """Where rows physically live: ``<name>_local`` on a cluster, the table itself otherwise."""
        return f"{table}_local" if self.cluster else table

    def fq(self, table: str) -> str:
        return f"{q(self.database)}.{q(table)}"

    def engine(self, t: Table) -> str:
        if not self.cluster:
            return f"{t.engine}({t.engine_args})" if t.engine_args else t.engine
        path = f"'/clickhouse/tables/{{shard}}/{self.database}/{self.local_name(t.name)}'"
        args = ", ".join(a for a in (path, "'{replica}'", t.engine_args) if a)
        return f"Replicated{t.engine}({args})"

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {q(self.database)}{self.on_cluster()}"

    def create_table(self, t: Table, ttl_days: int = 0) -> list[str]:
        cols = [f"    {q(n)} {typ}" for n, typ in t.columns] + [f"    {i}" for i in t.indexes]
        body = ",\n".join(cols)
        parts = [
            f"CREATE TABLE IF NOT EXISTS {self.fq(self.local_name(t.name))}{self.on_cluster()} (\n{body}\n)",
            f"ENGINE = {self.engine(t)}",
        ]
        if t.partition_by:
            parts.append(f"PARTITION BY {t.partition_by}")
        parts.append(f"ORDER BY {t.order_by}")
        if ttl_days and t.ttl_column:
            parts.append(f"TTL {t.ttl_column} + toIntervalDay({int(ttl_days)})")
        settings = dict(t.settings)
        if self.cluster:
            settings.pop("non_replicated_deduplication_window", None)  # Replicated* dedup by default
        if settings:
            parts.append("SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items()))
        stmts = ["\n".join(parts)]
        if self.cluster:
            stmts.append(
                f"CREATE TABLE IF NOT EXISTS {self.fq(t.name)}{self.on_cluster()} "
                f"AS {self.fq(self.local_name(t.name))} "
                f"ENGINE = Distributed({q(self.cluster)}, {q(self.database)}, "
                f"{q(self.local_name(t.name))}, {t.shard_key})"
            )
        return stmts

    def add_column(self, t: Table, column: str) -> list[str]:
        """Brings a table created before ``column`` joined its definition up to date (idempotent);
        on a cluster the Distributed table gets it too, so inserts through it carry the column."""
        typ = dict(t.columns)[column]
        names = [self.local_name(t.name)] + ([t.name] if self.cluster else [])
        return [
            f"ALTER TABLE {self.fq(n)}{self.on_cluster()} ADD COLUMN IF NOT EXISTS {q(column)} {typ}"
            for n in names
        ]

    def create_trace_id_ts_mv(self) -> str:
        """Feeds min/max span time per trace; on a cluster it runs on each node's local tables."""
        src = self.fq(self.local_name("otel_traces"))
        dst = self.fq(self.local_name("otel_traces_trace_id_ts"))
        mv = self.fq(self.local_name("otel_traces_trace_id_ts_mv"))
        return (
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {mv}{self.on_cluster()} TO {dst} AS\n"
            "SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End\n"
            f"FROM {src}\nWHERE TraceId != ''\nGROUP BY TraceId"
        )

    def modify_ttl(self, t: Table, ttl_days: int) -> str:
        """TTL for an existing table; 0 removes it. Run against the local (data) table."""
        target = f"ALTER TABLE {self.fq(self.local_name(t.name))}{self.on_cluster()}"
        if not ttl_days:
            return f"{target} REMOVE TTL"
        return f"{target} MODIFY TTL {t.ttl_column} + toIntervalDay({int(ttl_days)})"
