"""forewarn's five dashboards, as code: what each panel asks ClickHouse, through the plugin's macros.

Every query reads the OpenTelemetry exporter tables or forewarn's own tables (flows, remediation
audit, ingest) in the data source's default database, filters by the template variables with
``$__conditionalAll`` (so "All" costs no predicate) and by the dashboard range with ``$__timeFilter``.
Environment is a resource attribute, so it filters the OTel tables only; the flows' tables are
keyed by service.

>>> sorted(d["uid"] for d in all_dashboards())
['forewarn-alerts', 'forewarn-anomalies', 'forewarn-logs-traces', 'forewarn-self', 'forewarn-service-overview']
"""

from __future__ import annotations

import json
from typing import Any

from forewarn.dashboards.panels import (
    annotation,
    custom_variable,
    heatmap_panel,
    logs_panel,
    pushed_annotations,
    query_variable,
    stat_panel,
    table_panel,
    text_panel,
    time_series,
)
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

TAGS = ["forewarn"]
SCHEMA_VERSION = 41  # Grafana 11.x dashboard model, as the SDK writes it

# -- filters shared by the panels ---------------------------------------------------------------
ENV_EXPR = "ResourceAttributes['deployment.environment']"
SVC = "$__conditionalAll(ServiceName IN (${service:singlequote}), $service)"
OP = "$__conditionalAll(SpanName IN (${operation:singlequote}), $operation)"
ENV = f"$__conditionalAll({ENV_EXPR} IN (${{environment:singlequote}}), $environment)"
SVC_F = "$__conditionalAll(service IN (${service:singlequote}), $service)"  # flows tables
ENTRY = "(SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')"  # the flows' RED definition
LIVE = "run = 'live'"
BAND_SIGNALS = [
    "red.p95",
    "red.p99",
    "red.p50",
    "red.rate",
    "red.error_ratio",
    "log.rate",
    "log.error_rate",
    "latency.shift",
]
BAND_HISTORY = 30  # buckets behind each point that define its expected range


def variables() -> list[Any]:
    """service, operation, environment: the same three on every dashboard."""
    return [
        query_variable(
            "environment",
            "Environment",
            f"SELECT DISTINCT {ENV_EXPR} AS environment FROM otel_traces "
            f"WHERE $__timeFilter(Timestamp) AND {ENV_EXPR} != '' ORDER BY environment LIMIT 100",
        ),
        query_variable(
            "service",
            "Service",
            # services that only log count too
            f"SELECT DISTINCT ServiceName FROM (SELECT ServiceName FROM otel_traces WHERE $__timeFilter(Timestamp) "
            f"AND {ENV} UNION ALL SELECT ServiceName FROM otel_logs WHERE $__timeFilter(Timestamp) AND {ENV}) "
            "WHERE ServiceName != '' ORDER BY ServiceName LIMIT 1000",
        ),
        query_variable(
            "operation",
            "Operation",
            f"SELECT DISTINCT SpanName FROM otel_traces WHERE $__timeFilter(Timestamp) AND {SVC} AND {ENV} "
            "ORDER BY SpanName LIMIT 1000",
        ),
    ]


ANOMALY_ANNOTATION = f"""
SELECT ts AS time, concat(service, ' · ', name, ': ', explanation) AS text, [kind, detector, service] AS tags
FROM anomalies FINAL
WHERE {LIVE} AND $__timeFilter(ts) AND {SVC_F}
ORDER BY time LIMIT 1000"""

INCIDENT_ANNOTATION = """
SELECT started_at AS time, updated_at AS timeEnd,
       concat('incident ', toString(incident_id), ': ', arrayStringConcat(services, ', '),
              if(resolved, ' (resolved)', '')) AS text, ['incident'] AS tags
FROM incidents FINAL
WHERE run = 'live' AND started_at <= $__toTime AND updated_at >= $__fromTime
  AND $__conditionalAll(hasAny(services, [${service:singlequote}]), $service)
ORDER BY time LIMIT 500"""

REMEDIATION_ANNOTATION = """
SELECT event_time AS time,
       concat(hook, ' ', event, ': ', outcome, if(reason != '', concat(' (', reason, ')'), '')) AS text,
       ['remediation', hook, outcome] AS tags
FROM forewarn_remediation_audit
WHERE $__timeFilter(event_time) AND event IN ('attempt', 'succeeded', 'failed', 'refused')
  AND $__conditionalAll(labels['service'] IN (${service:singlequote}), $service)
ORDER BY time LIMIT 1000"""


def _annotations() -> list[Any]:
    return [
        annotation("Anomalies", ANOMALY_ANNOTATION, "red"),
        annotation("Incidents", INCIDENT_ANNOTATION, "orange"),
        annotation("Remediations", REMEDIATION_ANNOTATION, "blue"),
        pushed_annotations(),
    ]


def _dashboard(uid: str, title: str, description: str, panels: list[Any], extra_vars: list[Any] = ()) -> dict:
    b = (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
    )
    for v in [*variables(), *extra_vars]:
        b = b.with_variable(v)
    for a in _annotations():
        b = b.annotation(a)
    return finish(b, panels)


def finish(b: Any, panels: list[Any]) -> dict:
    """The dashboard's JSON: its panels numbered and laid out, the schema version pinned."""
    for i, p in enumerate(panels, start=1):
        b = b.with_panel(p.id(i))
    out = json.loads(json.dumps(b.build(), cls=JSONEncoder))
    _layout(out["panels"])
    out["schemaVersion"] = SCHEMA_VERSION
    out["version"] = 1
    return out


def _layout(panels: list[dict]) -> None:
    """Left to right, wrapping when a panel does not fit the 24-column grid (the SDK's own
    placement only wraps after overflowing)."""
    x = y = row_h = 0
    for p in panels:
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        g["x"], g["y"] = x, y
        x += g["w"]
        row_h = max(row_h, g["h"])


# -- service overview -----------------------------------------------------------------------------
def _red(expr: str, alias: str) -> str:
    return f"""
SELECT $__timeInterval(Timestamp) AS time, ServiceName AS service, {expr} AS {alias}
FROM otel_traces
WHERE $__timeFilter(Timestamp) AND {ENTRY} AND {SVC} AND {OP} AND {ENV}
GROUP BY time, service ORDER BY time"""


BAND_SQL = f"""
SELECT time, value, expected, greatest(q1 - 1.5 * (q3 - q1), 0) AS lower, q3 + 1.5 * (q3 - q1) AS upper
FROM (
    SELECT ts AS time, value, quantile(0.5)(value) OVER w AS expected,
           quantile(0.25)(value) OVER w AS q1, quantile(0.75)(value) OVER w AS q3
    FROM forewarn_signals FINAL
    WHERE name = ${{signal:singlequote}} AND service IN (${{service:singlequote}}) AND empty(labels)
      AND ts >= $__fromTime - INTERVAL 1 HOUR AND ts <= $__toTime
    WINDOW w AS (PARTITION BY series_id ORDER BY ts ROWS BETWEEN {BAND_HISTORY} PRECEDING AND 1 PRECEDING)
)
WHERE $__timeFilter(time) ORDER BY time"""

BAND_ANOMALIES_SQL = f"""
SELECT ts AS time, value AS anomaly
FROM anomalies FINAL
WHERE {LIVE} AND name = ${{signal:singlequote}} AND service IN (${{service:singlequote}}) AND empty(labels)
  AND $__timeFilter(ts)
ORDER BY time"""


def service_overview() -> dict:
    band = (
        time_series(
            "$service · $signal with expected range",
            [BAND_SQL, BAND_ANOMALIES_SQL],
            "The signal the detectors score (per bucket), its expected value (median of the previous "
            f"{BAND_HISTORY} buckets) and range (Tukey fences: quartiles ± 1.5 IQR, so a short incident "
            "does not widen it), and the points forewarn flagged as anomalous.",
            band=True,
        )
        .repeat("service")
        .repeat_direction("h")
        .max_per_row(2)
    )
    panels = [
        time_series("Request rate", _red("count() / $__interval_s", "rate"), "Entry spans per second.", "reqps", w=8),
        time_series(
            "Error ratio", _red("countIf(StatusCode = 'Error') / count()", "error_ratio"),
            "Share of entry spans with status Error.", "percentunit", w=8,
        ),
        time_series(
            "Latency p95", _red("quantile(0.95)(Duration) / 1e6", "p95_ms"),
            "95th percentile duration of entry spans.", "ms", w=8,
        ),
        band,
    ]  # fmt: skip
    return _dashboard(
        "forewarn-service-overview",
        "forewarn · Service overview",
        "RED per service with the expected range and forewarn's anomalies.",
        panels,
        [custom_variable("signal", "Signal", BAND_SIGNALS)],
    )


# -- anomalies and incidents ----------------------------------------------------------------------
ANOMALY_TABLE_SQL = f"""
SELECT a.ts AS time, a.service AS service, a.name AS signal, toString(a.labels) AS labels,
       round(a.value, 4) AS value, round(a.expected, 4) AS expected, round(a.score, 4) AS score,
       a.detector AS detector, a.kind AS kind, a.explanation AS explanation,
       toString(a.incident_id) AS incident, toString(a.anomaly_id) AS anomaly_id, f.label AS feedback
FROM (SELECT * FROM anomalies FINAL WHERE {LIVE} AND $__timeFilter(ts) AND {SVC_F}) AS a
LEFT JOIN (SELECT anomaly_id, argMax(label, at) AS label FROM forewarn_feedback FINAL GROUP BY anomaly_id) AS f
    ON a.anomaly_id = f.anomaly_id
ORDER BY time DESC LIMIT 500"""

INCIDENT_TABLE_SQL = """
SELECT toString(incident_id) AS incident, started_at, updated_at,
       dateDiff('second', started_at, updated_at) AS duration_s,
       arrayStringConcat(services, ', ') AS affected, anomalies,
       JSONExtractString(suspects, 1, 'service') AS top_suspect,
       JSONExtractString(suspects, 1, 'operation') AS suspect_operation,
       alert_labels['alertname'] AS alertname, if(resolved, 'resolved', 'firing') AS state, suspects
FROM incidents FINAL
WHERE run = 'live' AND started_at <= $__toTime AND updated_at >= $__fromTime
  AND $__conditionalAll(hasAny(services, [${service:singlequote}]), $service)
ORDER BY started_at DESC LIMIT 200"""


def anomalies() -> dict:
    where = f"{LIVE} AND $__timeFilter(ts) AND {SVC_F}"
    panels = [
        stat_panel("Anomalies", f"SELECT count() AS anomalies FROM anomalies FINAL WHERE {where}"),
        stat_panel(
            "Open incidents",
            "SELECT countIf(NOT resolved) AS open FROM incidents FINAL WHERE run = 'live' AND $__timeFilter(updated_at)",
        ),
        stat_panel(
            "Incidents",
            "SELECT count() AS incidents FROM incidents FINAL WHERE run = 'live' AND $__timeFilter(started_at)",
        ),
        stat_panel(
            "Marked false positive",
            "SELECT countIf(label = 'false_positive') AS false_positives FROM forewarn_feedback FINAL WHERE $__timeFilter(at)",
        ),
        time_series(
            "Anomalies by kind",
            f"SELECT $__timeInterval(ts) AS time, kind, count() AS anomalies FROM anomalies FINAL WHERE {where} "
            "GROUP BY time, kind ORDER BY time",
            "Deviations, forecasts (time to saturation) and cold-start detections per interval.",
            bars=True,
        ),
        time_series(
            "Highest score per service",
            f"SELECT $__timeInterval(ts) AS time, service, max(score) AS score FROM anomalies FINAL WHERE {where} "
            "GROUP BY time, service ORDER BY time",
            "Calibrated detector score of the worst anomaly in each interval (alerting threshold near 1).",
            points=True,
        ),
        table_panel("Incidents", INCIDENT_TABLE_SQL, "Correlated anomalies, ranked suspects, alert state."),
        table_panel("Anomalies", ANOMALY_TABLE_SQL, "Every anomaly with its explanation and feedback.", h=12),
        table_panel(
            "Feedback",
            "SELECT label, count() AS anomalies, max(at) AS last FROM forewarn_feedback FINAL "
            "WHERE $__timeFilter(at) GROUP BY label ORDER BY anomalies DESC",
            "Operator feedback (forewarn flows feedback); false positives suppress their series.",
            w=12,
            h=6,
        ),
    ]
    return _dashboard(
        "forewarn-anomalies",
        "forewarn · Anomalies and incidents",
        "Timeline, scores, explanations, suspects and feedback.",
        panels,
    )


# -- alerts and remediations ----------------------------------------------------------------------
AUDIT = "forewarn_remediation_audit"
AUDIT_WHERE = (
    "$__timeFilter(event_time) AND $__conditionalAll(labels['service'] IN (${service:singlequote}), $service)"
)

ALERTS_NOTE = """\
forewarn posts one alert per incident to its Alertmanager-compatible router; the table below shows
them from the `incidents` table. The router's live alerts and **silences** are held by the router
(its v2 API), not in ClickHouse: the provisioned **forewarn-router** Alertmanager data source shows
them under *Alerting → Silences / Alert groups*."""


def alerts() -> dict:
    panels = [
        text_panel("Alerts and silences", ALERTS_NOTE, h=4),
        table_panel(
            "Alerts sent (one per incident)",
            """
SELECT started_at AS time, alert_labels['alertname'] AS alertname, arrayStringConcat(services, ', ') AS affected,
       if(resolved, 'resolved', 'firing') AS state, anomalies, toString(alert_labels) AS labels,
       toString(incident_id) AS incident
FROM incidents FINAL
WHERE run = 'live' AND started_at <= $__toTime AND updated_at >= $__fromTime
  AND $__conditionalAll(hasAny(services, [${service:singlequote}]), $service)
ORDER BY state = 'firing' DESC, time DESC LIMIT 200""",
            w=24,
            h=7,
        ),
        stat_panel(
            "Remediations succeeded",
            f"SELECT countIf(event = 'succeeded') AS succeeded FROM {AUDIT} WHERE {AUDIT_WHERE}",
            w=8,
        ),
        stat_panel(
            "Remediations failed",
            f"SELECT countIf(event = 'failed') AS failed FROM {AUDIT} WHERE {AUDIT_WHERE}",
            w=8,
        ),
        stat_panel(
            "Remediations refused",
            f"SELECT countIf(event = 'refused') AS refused FROM {AUDIT} WHERE {AUDIT_WHERE}",
            w=8,
        ),
        time_series(
            "Remediation events",
            f"SELECT $__timeInterval(event_time) AS time, event, count() AS events FROM {AUDIT} WHERE {AUDIT_WHERE} "
            "GROUP BY time, event ORDER BY time",
            "Decisions and attempts per interval (queued, attempt, succeeded, failed, refused, approvals, breaker).",
            bars=True,
        ),
        time_series(
            "Remediation call latency p95",
            f"SELECT $__timeInterval(event_time) AS time, hook, quantile(0.95)(latency_ms) AS p95_ms FROM {AUDIT} "
            f"WHERE {AUDIT_WHERE} AND event = 'attempt' GROUP BY time, hook ORDER BY time",
            "Hook call latency of each attempt.",
            "ms",
        ),
        table_panel(
            "Remediation audit",
            f"""
SELECT event_time AS time, hook, event, outcome, alertname, labels['service'] AS service, attempt,
       status_code, round(latency_ms, 1) AS latency_ms, dry_run, approval_state, breaker_state, reason, error, action_id
FROM {AUDIT}
WHERE {AUDIT_WHERE}
ORDER BY event_time DESC, seq DESC LIMIT 500""",
            "Every decision and attempt, from the audit table (kept forever).",
            h=12,
        ),
    ]
    return _dashboard(
        "forewarn-alerts",
        "forewarn · Alerts and remediations",
        "Alerts forewarn sent, and every remediation attempt with outcome and latency.",
        panels,
    )


# -- logs and traces ------------------------------------------------------------------------------
TEMPLATE_RATE_SQL = """
SELECT $__timeInterval(l.Timestamp) AS time, concat(l.ServiceName, ': ', leftUTF8(t.template, 60)) AS template,
       count() / $__interval_s AS rate
FROM forewarn_log_templates AS l FINAL
INNER JOIN (SELECT template_id, service, any(template) AS template FROM forewarn_templates FINAL
            GROUP BY template_id, service) AS t
    ON l.template_id = t.template_id AND l.ServiceName = t.service
WHERE $__timeFilter(l.Timestamp) AND $__conditionalAll(l.ServiceName IN (${service:singlequote}), $service)
  AND l.template_id IN (SELECT template_id FROM forewarn_log_templates WHERE $__timeFilter(Timestamp)
                        GROUP BY template_id ORDER BY count() DESC LIMIT 10)
GROUP BY time, template ORDER BY time"""

HEATMAP_SQL = f"""
SELECT $__timeInterval(Timestamp) AS time, toString(exp2(greatest(0, ceil(log2(Duration / 1e6))))) AS le,
       count() AS spans
FROM otel_traces
WHERE $__timeFilter(Timestamp) AND ServiceName IN (${{service:singlequote}}) AND {OP} AND {ENV}
GROUP BY time, le ORDER BY time, toFloat64(le)"""


def logs_traces() -> dict:
    log_where = f"$__timeFilter(Timestamp) AND {SVC} AND {ENV}"
    panels = [
        time_series(
            "Log rate by severity",
            "SELECT $__timeInterval(Timestamp) AS time, multiIf(SeverityNumber >= 17, 'error', SeverityNumber >= 13, "
            "'warn', SeverityNumber >= 9, 'info', 'debug') AS severity, count() / $__interval_s AS rate "
            f"FROM otel_logs WHERE {log_where} GROUP BY time, severity ORDER BY time",
            unit="short",
            w=12,
        ),
        time_series(
            "Error logs per second by service",
            "SELECT $__timeInterval(Timestamp) AS time, ServiceName AS service, "
            f"countIf(SeverityNumber >= 17) / $__interval_s AS errors FROM otel_logs WHERE {log_where} "
            "GROUP BY time, service ORDER BY time",
            w=12,
        ),
        time_series(
            "Top log templates",
            TEMPLATE_RATE_SQL,
            "Lines per second of the 10 busiest templates mined by forewarn (Drain).",
            w=24,
        ),
        table_panel(
            "New log templates",
            "SELECT first_seen AS time, service, template FROM forewarn_templates FINAL "
            f"WHERE $__timeFilter(first_seen) AND {SVC_F} ORDER BY first_seen DESC LIMIT 200",
            "Templates seen for the first time in the range: often the first sign of a new failure mode.",
            w=24,
            h=7,
        ),
        heatmap_panel(
            "$service · span latency",
            HEATMAP_SQL,
            "Spans per power-of-two duration bucket (upper bound, ms).",
        )
        .repeat("service")
        .repeat_direction("h")
        .max_per_row(2),
        table_panel(
            "Slowest requests",
            "SELECT Timestamp AS time, ServiceName AS service, SpanName AS operation, round(Duration / 1e6, 2) AS "
            "duration_ms, StatusCode AS status, TraceId AS trace_id FROM otel_traces "
            f"WHERE $__timeFilter(Timestamp) AND {ENTRY} AND {SVC} AND {OP} AND {ENV} ORDER BY Duration DESC LIMIT 20",
            "Open a trace id in Explore with the same data source (OTel mode).",
            h=8,
        ),
        logs_panel(
            "Error logs",
            "SELECT Timestamp AS timestamp, Body AS body, SeverityText AS level, ServiceName AS service, TraceId AS "
            f"traceID FROM otel_logs WHERE {log_where} AND SeverityNumber >= 17 ORDER BY Timestamp DESC LIMIT 500",
        ),
    ]
    return _dashboard(
        "forewarn-logs-traces",
        "forewarn · Logs and traces",
        "Log template rates, new templates, error rates; span latency distribution per service.",
        panels,
    )


# -- forewarn itself ------------------------------------------------------------------------------
_STORED = " UNION ALL ".join(
    f"SELECT $__timeInterval({col}) AS time, '{sig}' AS signal FROM {table} WHERE $__timeFilter({col})"
    for table, col, sig in (
        ("otel_traces", "Timestamp", "spans"),
        ("otel_logs", "Timestamp", "logs"),
        ("otel_metrics_gauge", "TimeUnix", "metric points"),
        ("otel_metrics_sum", "TimeUnix", "metric points"),
        ("otel_metrics_histogram", "TimeUnix", "metric points"),
        ("otel_metrics_exponential_histogram", "TimeUnix", "metric points"),
        ("otel_metrics_summary", "TimeUnix", "metric points"),
    )
)

SELF_NOTE = """\
Only what forewarn stores in ClickHouse is charted here. The collector's **queue depth**
(`forewarn_collector_queue_bytes`, `_queue_requests`), **insert latency** (`forewarn_collector_export_seconds`),
**rejections at the receivers** (`forewarn_collector_rejected_items` by reason), Kafka **consumer lag**
(`forewarn_ingest_consumer_lag`) and alert delivery (`forewarn_alerts_*`) are Prometheus metrics on each
process's `/metrics`; the embedded ClickHouse keeps no `system.part_log`/`query_log` to derive them from."""


def forewarn_self() -> dict:
    panels = [
        text_panel("What this dashboard can see", SELF_NOTE, h=5),
        time_series(
            "Stored telemetry per second (event time)",
            f"SELECT time, signal, count() / $__interval_s AS rows_per_s FROM ({_STORED}) "
            "GROUP BY time, signal ORDER BY time",
            "Rows in the OTel tables per second of their own timestamps.",
            w=12,
        ),
        time_series(
            "Rejected by reason",
            """
SELECT time, reason, sum(n) AS rejected FROM (
    SELECT $__timeInterval(received_at) AS time, concat('kafka dead letter: ', splitByChar(':', error)[1]) AS reason,
           count() AS n
    FROM forewarn_ingest_dead_letters WHERE $__timeFilter(received_at) GROUP BY time, reason
    UNION ALL
    SELECT $__timeInterval(window_end) AS time, concat('series over budget: ', name) AS reason,
           sum(rejected_points) AS n
    FROM forewarn_cardinality FINAL WHERE $__timeFilter(window_end) GROUP BY time, reason
) GROUP BY time, reason ORDER BY time""",
            "Kafka records set aside (not OTLP) and signal points dropped by the cardinality guard.",
            bars=True,
            w=12,
        ),
        time_series(
            "Kafka ingest (records per second by topic)",
            "SELECT $__timeInterval(planned_at) AS time, topic, sum(last_offset - first_offset + 1) / $__interval_s "
            "AS records_per_s FROM forewarn_ingest_batches FINAL WHERE $__timeFilter(planned_at) "
            "GROUP BY time, topic ORDER BY time",
            "Offset ranges the ingesters inserted (batch plans), in --kafka deployments.",
            w=12,
        ),
        table_panel(
            "Kafka partitions: last ingested offset",
            "SELECT topic, partition, max(last_offset) AS last_offset, max(planned_at) AS last_batch, "
            "dateDiff('second', max(planned_at), now64(3)) AS idle_s, count() AS batches "
            "FROM forewarn_ingest_batches FINAL WHERE $__timeFilter(planned_at) GROUP BY topic, partition "
            "ORDER BY topic, partition",
            "Consumer progress per partition (lag against the broker is the Prometheus gauge).",
            w=12,
            h=8,
        ),
        time_series(
            "Signal points scored per second",
            "SELECT $__timeInterval(ts) AS time, splitByChar('.', name)[1] AS family, count() / $__interval_s AS "
            f"points_per_s FROM forewarn_signals FINAL WHERE $__timeFilter(ts) AND {SVC_F} "
            "GROUP BY time, family ORDER BY time",
            "Work done by the score flow's micro-batches, by signal family.",
            w=12,
        ),
        table_panel(
            "Flow runs: checkpoints and lag",
            "SELECT key AS flow, argMax(watermark, committed_at) AS scored_until, max(committed_at) AS last_run, "
            "dateDiff('second', scored_until, last_run) AS lag_s "
            "FROM forewarn_flow_state GROUP BY key ORDER BY key",
            "Each score shard's watermark (scored up to) and when its last micro-batch committed.",
            w=12,
            h=8,
        ),
        time_series(
            "Series tracked",
            "SELECT $__timeInterval(first_seen) AS time, count() AS new_series FROM forewarn_series FINAL "
            f"WHERE $__timeFilter(first_seen) AND {SVC_F} GROUP BY time ORDER BY time",
            "New series admitted by the cardinality guard per interval.",
            bars=True,
            w=12,
        ),
    ]
    return _dashboard(
        "forewarn-self",
        "forewarn · forewarn itself",
        "Ingest, rejections, Kafka consumer progress, score flow work and lag.",
        panels,
    )


BUILDERS = {
    "service-overview": service_overview,
    "anomalies": anomalies,
    "alerts": alerts,
    "logs-traces": logs_traces,
    "forewarn-self": forewarn_self,
}


def all_dashboards() -> list[dict]:
    return [build() for build in BUILDERS.values()]
