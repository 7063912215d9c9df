"""Fill a store with a recent stretch of the synthetic shop and everything forewarn derives from it,
so every dashboard panel has something to show: OTLP through the collector's conversion, signals,
anomalies and incidents from the real score flow, and (where the producing component needs live
infrastructure: hooks, a Kafka broker) rows written in exactly the writer's layout.

Used by the dashboard tests and by ``forewarn report --sample`` (a report without live data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client
from forewarn.dashboards.workload import Incident, Workload, insert

from forewarn.config import Settings

MINUTE = 60_000


@dataclass
class SampleInfo:
    start_ms: int
    end_ms: int
    incidents: list[Incident]
    rows: dict[str, int]
    anomalies: int


def default_incidents(start_ms: int, minutes: int) -> list[Incident]:
    m = start_ms + minutes * MINUTE
    return [
        Incident("latency", "payments", m - 30 * MINUTE, 8 * MINUTE),
        Incident("errors", "checkout", m - 16 * MINUTE, 6 * MINUTE),
        Incident("new_log", "db", m - 8 * MINUTE, 4 * MINUTE),
    ]


def populate(
    client: Client,
    settings: Settings,
    minutes: int = 80,
    end_ms: int | None = None,
    batch_ms: int = 5 * MINUTE,
    seed: int = 11,
) -> SampleInfo:
    """``minutes`` of telemetry ending at ``end_ms`` (default: a minute ago), scored by the flows."""
    from forewarn.flows.engine import ScoreEngine
    from forewarn.flows.store import FlowStore

    db = settings.storage.database
    end = end_ms or int(time.time() * 1000) // MINUTE * MINUTE - MINUTE
    start = end - minutes * MINUTE
    incidents = default_incidents(start, minutes)
    w = Workload(seed=seed, rate=6.0, day_s=minutes * 60.0, incidents=incidents)
    rows: dict[str, int] = {}
    for _, batch in w.batches(start, end, batch_ms):
        for k, v in insert(client, db, batch).items():
            rows[k] = rows.get(k, 0) + v
    engine = ScoreEngine(client, settings, "live", None, clock=lambda: end / 1000.0)
    engine.start_at(start)
    reports = engine.run_until(end)
    store = FlowStore(client, db)
    found = store.anomalies("live", limit=1, since_ms=start)
    if len(found):
        a = found.iloc[0]
        store.write_feedback(
            int(a.anomaly_id), int(a.series_id), str(a.detector), "false_positive", "sample", end
        )
    _remediation_audit(client, db, incidents)
    _ingest_tables(client, db, start, end)
    return SampleInfo(start, end, incidents, rows, sum(r.anomalies for r in reports))


def _remediation_audit(client: Client, db: str, incidents: list[Incident]) -> None:
    """The audit trail the remediation engine writes for one hook call per incident (AUDIT layout)."""
    from forewarn.alerts.remediation.audit import AUDIT_TABLE, COLUMNS, to_row

    rows, seq = [], 0
    for i, inc in enumerate(incidents):
        t = (inc.start_ms + 90_000) / 1000.0
        common = {
            "hook": "restart-pod" if inc.kind == "latency" else "scale-out",
            "action_id": f"sample-{i}",
            "alertname": "ForewarnIncident",
            "receiver": "ops",
            "labels": {"service": inc.service, "alertname": "ForewarnIncident"},
            "method": "POST",
            "url": "https://hooks.example.internal/remediate",
        }
        events = [("queued", "queued", {}), ("attempt", "success", {"attempt": 1, "status_code": 200, "latency_ms": 120.0 + 40 * i}),
                  ("succeeded", "succeeded", {})]  # fmt: skip
        if inc.kind == "new_log":
            events = [("refused", "rate_limited", {"reason": "rate_limited"})]
        for j, (event, outcome, extra) in enumerate(events):
            seq += 1
            rows.append(
                to_row(seq, {**common, **extra, "event": event, "outcome": outcome, "ts": t + j * 0.2})
            )
    client.insert(AUDIT_TABLE, rows, column_names=COLUMNS, database=db)


def _ingest_tables(client: Client, db: str, start_ms: int, end_ms: int) -> None:
    """Batch plans and a dead letter as the Kafka ingester records them (the broker is not part of
    the sample), and one over-budget window as the cardinality guard records it."""

    def dt(ms: float) -> datetime:
        return datetime.fromtimestamp(ms / 1000.0, tz=UTC)

    plans, offset = [], 0
    for t in range(start_ms, end_ms, MINUTE):
        for p in range(2):
            n = 200 + 50 * p
            plans.append(["forewarn-ingest", "otlp_spans", p, offset, offset + n - 1, dt(t)])
        offset += 250
    client.insert(
        "forewarn_ingest_batches",
        plans,
        column_names=["group_id", "topic", "partition", "first_offset", "last_offset", "planned_at"],
        database=db,
    )
    client.insert(
        "forewarn_ingest_dead_letters",
        [[dt(end_ms - 20 * MINUTE), "otlp_logs", 1, 4242, "not OTLP: protobuf decode error", b"\x00garbage"]],
        column_names=["received_at", "topic", "partition", "offset", "error", "value"],
        database=db,
    )
    client.insert(
        "forewarn_cardinality",
        [[dt(end_ms - 10 * MINUTE), "app.requests:rate", "checkout", 3, 30, 1000]],
        column_names=["window_end", "name", "service", "rejected_series", "rejected_points", "budget"],
        database=db,
    )
