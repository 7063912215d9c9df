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


def scenario(
    client, db: str, t0_ms: int, buckets: int, incident_at: int, step_ms: int = 10_000, seed: int = 7
) -> None:
    """Three services (web calls db; api alone) with steady traffic and logs, then from bucket
    ``incident_at`` a latency regression of db's ``SELECT orders`` (seen by web too), an error burst
    in web and a new error log template in db; plus a disk of ``api`` that fills up throughout."""
    rng = random.Random(seed)
    spans, logs, disk = [], [], []
    for b in range(buckets):
        bad = b >= incident_at
        for _ in range(20):
            t = t0_ms + b * step_ms + rng.random() * step_ms
            tid, sp = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
            d_db = rng.lognormvariate(15, 0.2) * (8 if bad else 1)
            err = rng.random() < (0.4 if bad else 0.0)
            spans.append(
                {
                    "ms": t,
                    "op": "GET /checkout",
                    "service": "web",
                    "dur_ns": d_db + 2e6,
                    "trace": tid,
                    "span": sp,
                    "status": "Error" if err else "Ok",
                }
            )
            spans.append(
                {"ms": t, "op": "SELECT orders", "service": "db", "dur_ns": d_db, "trace": tid, "parent": sp}
            )
            spans.append(
                {"ms": t, "op": "GET /health", "service": "api", "dur_ns": rng.lognormvariate(14, 0.2)}
            )
            logs.append(
                ("web", t, 9, f"served checkout for user {rng.randint(1, 10_000)} in {rng.randint(2, 9)} ms")
            )
        logs.append(
            ("db", t0_ms + b * step_ms + 300, 9, f"checkpoint complete: wrote {rng.randint(10, 99)} buffers")
        )
        if bad:
            logs.append(("db", t0_ms + b * step_ms + 500, 17, f"deadlock detected on table orders tx {b}"))
        disk.append(
            (
                "api",
                "system.filesystem.utilization",
                {"device": "/dev/sda1"},
                t0_ms + b * step_ms + 100,
                0.5 + 0.0004 * b + rng.random() * 0.0002,
            )
        )
    insert_spans(client, db, spans)
    insert_logs(client, db, logs)
    insert_gauge(client, db, disk)
