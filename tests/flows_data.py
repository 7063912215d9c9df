"""Test telemetry for the flows tests: rows in the OTel exporter layout, inserted with
clickhouse-connect's parameterised insert (the collector's own conversion is tested elsewhere)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

# A minute-aligned instant two hours ago: recent enough that the tables' TTL keeps the rows.
T0_MS = int(time.time() - 7200) // 60 * 60_000


def dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def insert_spans(client, db: str, spans: list[dict]) -> None:
    cols = [
        "Timestamp",
        "TraceId",
        "SpanId",
        "ParentSpanId",
        "SpanName",
        "SpanKind",
        "ServiceName",
        "Duration",
        "StatusCode",
    ]
    rows = [
        [
            dt(s["ms"]),
            s.get("trace", f"{random.getrandbits(128):032x}"),
            s.get("span", f"{random.getrandbits(64):016x}"),
            s.get("parent", ""),
            s["op"],
            s.get("kind", "Server"),
            s["service"],
            int(s["dur_ns"]),
            s.get("status", "Unset"),
        ]
        for s in spans
    ]
    client.insert("otel_traces", rows, column_names=cols, database=db)


def insert_gauge(client, db: str, points: list[tuple[str, str, dict, float, float]]) -> None:
    """points: (service, metric, attributes, ms, value)."""
    rows = [[svc, m, attrs, dt(ms), dt(ms), v] for svc, m, attrs, ms, v in points]
    client.insert(
        "otel_metrics_gauge",
        rows,
        column_names=["ServiceName", "MetricName", "Attributes", "StartTimeUnix", "TimeUnix", "Value"],
        database=db,
    )


def insert_sum(client, db: str, points: list[tuple]) -> None:
    """points: (service, metric, attributes, start_ms, ms, value, temporality, monotonic)."""
    rows = [[svc, m, a, dt(st), dt(ms), v, temp, mono] for svc, m, a, st, ms, v, temp, mono in points]
    client.insert(
        "otel_metrics_sum",
        rows,
        column_names=[
            "ServiceName",
            "MetricName",
            "Attributes",
            "StartTimeUnix",
            "TimeUnix",
            "Value",
            "AggregationTemporality",
            "IsMonotonic",
        ],
        database=db,
    )


def insert_histogram(client, db: str, points: list[tuple]) -> None:
    """points: (service, metric, start_ms, ms, count, bucket_counts, bounds, temporality)."""
    rows = [[svc, m, {}, dt(st), dt(ms), n, 0.0, bc, b, temp] for svc, m, st, ms, n, bc, b, temp in points]
    client.insert(
        "otel_metrics_histogram",
        rows,
        column_names=[
            "ServiceName",
            "MetricName",
            "Attributes",
            "StartTimeUnix",
            "TimeUnix",
            "Count",
            "Sum",
            "BucketCounts",
            "ExplicitBounds",
            "AggregationTemporality",
        ],
        database=db,
    )


def insert_logs(client, db: str, logs: list[tuple[str, float, int, str]]) -> None:
    """logs: (service, ms, severity_number, body)."""
    rows = [[dt(ms), svc, sev, "ERROR" if sev >= 17 else "INFO", body] for svc, ms, sev, body in logs]
    client.insert(
        "otel_logs",
        rows,
        column_names=["Timestamp", "ServiceName", "SeverityNumber", "SeverityText", "Body"],
        database=db,
    )
