"""Requests built by the real OpenTelemetry Python SDK and its OTLP encoders, through convert."""

from __future__ import annotations

import json
import logging

from forewarn.collector.convert import insert_requests
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from test_convert_traces import rows

RESOURCE = Resource.create({"service.name": "sdk-svc", "process.command_args": ["python", "app.py", "--x"]})


def test_sdk_spans(store, settings):
    db = settings.storage.database
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("sdk.test", "3.1")
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        parent.set_attributes({"s": "x", "b": True, "i": 7, "f": 0.5, "seq_s": ["a", "b"], "seq_i": [1, 2]})
        parent.add_event("evt", {"k": 1.25})
        with tracer.start_as_current_span(
            "child", kind=SpanKind.CLIENT, links=[Link(parent.get_span_context())]
        ):
            pass
        parent.set_status(Status(StatusCode.ERROR, "bad"))
    spans = exporter.get_finished_spans()
    payload = encode_spans(spans).SerializeToString()
    assert insert_requests(store, "traces", [payload], database=db) == {"otel_traces": 2}

    got = {
        r["SpanName"]: r
        for r in rows(store, db, "SELECT *, toUnixTimestamp64Nano(Timestamp) AS ns FROM DB.otel_traces")
    }
    by_name = {s.name: s for s in spans}
    for name, row in got.items():
        sdk = by_name[name]
        assert row["TraceId"] == format(sdk.context.trace_id, "032x")
        assert row["SpanId"] == format(sdk.context.span_id, "016x")
        assert row["ns"] == sdk.start_time and row["Duration"] == sdk.end_time - sdk.start_time
        assert row["ServiceName"] == "sdk-svc"
        assert row["ResourceAttributes"]["process.command_args"] == '["python","app.py","--x"]'
        assert (row["ScopeName"], row["ScopeVersion"]) == ("sdk.test", "3.1")
    parent_row, child_row = got["parent"], got["child"]
    assert parent_row["SpanKind"] == "Server" and child_row["SpanKind"] == "Client"
    assert (parent_row["StatusCode"], parent_row["StatusMessage"]) == ("Error", "bad")
    assert parent_row["SpanAttributes"] == {
        "s": "x",
        "b": "true",
        "i": "7",
        "f": "0.5",
        "seq_s": '["a","b"]',
        "seq_i": "[1,2]",
    }
    assert parent_row["Events.Name"] == ["evt"] and parent_row["Events.Attributes"] == [{"k": "1.25"}]
    assert child_row["ParentSpanId"] == parent_row["SpanId"]
    assert child_row["Links.SpanId"] == [parent_row["SpanId"]]


def test_sdk_metrics(store, settings):
    db = settings.storage.database
    reader = InMemoryMetricReader()
    meter = MeterProvider(resource=RESOURCE, metric_readers=[reader]).get_meter("sdk.meter")
    meter.create_counter("requests", unit="1", description="served").add(3, {"route": "/a"})
    meter.create_histogram("latency", unit="ms").record(12.5, {"route": "/a"})
    meter.create_up_down_counter("queue").add(-2)
    payload = encode_metrics(reader.get_metrics_data()).SerializeToString()
    counts = insert_requests(store, "metrics", [payload], database=db)
    assert counts["otel_metrics_sum"] == 2 and counts["otel_metrics_histogram"] == 1

    sums = {r["MetricName"]: r for r in rows(store, db, "SELECT * FROM DB.otel_metrics_sum")}
    assert (sums["requests"]["Value"], sums["requests"]["IsMonotonic"]) == (3.0, True)
    assert sums["requests"]["Attributes"] == {"route": "/a"} and sums["requests"]["MetricUnit"] == "1"
    assert (sums["queue"]["Value"], sums["queue"]["IsMonotonic"]) == (-2.0, False)
    assert sums["requests"]["AggregationTemporality"] == 2  # cumulative
    (h,) = rows(store, db, "SELECT * FROM DB.otel_metrics_histogram")
    assert (h["Count"], h["Sum"], h["Min"], h["Max"]) == (1, 12.5, 12.5, 12.5)
    assert sum(h["BucketCounts"]) == 1 and len(h["BucketCounts"]) == len(h["ExplicitBounds"]) + 1


def test_sdk_logs(store, settings):
    db = settings.storage.database
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("forewarn.test.sdk")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("disk %s almost full", "/var", extra={"pct": 97})
    finally:
        logger.removeHandler(handler)
    records = exporter.get_finished_logs()
    payload = encode_logs(records).SerializeToString()
    assert insert_requests(store, "logs", [payload], database=db) == {"otel_logs": 1}
    (row,) = rows(store, db, "SELECT * FROM DB.otel_logs")
    assert row["Body"] == "disk /var almost full"
    assert (row["SeverityText"], row["SeverityNumber"]) == ("WARN", 13)
    assert row["LogAttributes"]["pct"] == "97"
    assert row["ServiceName"] == "sdk-svc"
    assert json.loads(row["ResourceAttributes"]["process.command_args"]) == ["python", "app.py", "--x"]
