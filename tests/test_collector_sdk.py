"""End to end with the real OpenTelemetry Python SDK exporters (OTLP/gRPC and OTLP/HTTP, gzip too)
into a CollectorService on ephemeral ports, read back from chDB field by field."""

from __future__ import annotations

import base64
import json
import time

import grpc
import httpx
import pytest
from collector_support import ControlledExporter, RunningCollector
from forewarn.collector.clickhouse_exporter import ClickHouseExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "test", "host.cpus": 4})


@pytest.fixture
def collector(settings, store):
    exp = ControlledExporter(ClickHouseExporter(settings))
    with RunningCollector(settings, exp) as svc:
        yield svc, exp


def exporters(transport: str, svc):
    """The SDK's span, metric and log exporters for one transport."""
    if transport.startswith("grpc"):
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw = {"endpoint": f"127.0.0.1:{svc.grpc_port}", "insecure": True}
        if transport.endswith("gzip"):
            kw["compression"] = grpc.Compression.Gzip
        return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = f"http://127.0.0.1:{svc.http_port}"
    comp = Compression.Gzip if transport.endswith("gzip") else Compression.NoCompression
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", compression=comp),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", compression=comp),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", compression=comp),
    )


ATTRS = {
    "s": "text é",
    "b": True,
    "i": 42,
    "f": 1.5,
    "sa": ["a", "b"],
    "ia": [1, 2],
    "fa": [0.5, 2.5],
    "ba": [True, False],
}
ATTRS_STORED = {
    "s": "text é",
    "b": "true",
    "i": "42",
    "f": "1.5",
    "sa": '["a","b"]',
    "ia": "[1,2]",
    "fa": "[0.5,2.5]",
    "ba": "[true,false]",
}


def make_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop.cart", "2.1.0")
    other = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1")]),
    )
    t0 = time.time_ns()
    with tracer.start_as_current_span(
        "GET /cart", kind=SpanKind.SERVER, attributes=ATTRS, start_time=t0
    ) as root:
        root.add_event("cache.miss", {"key": "cart:1", "size": 3}, timestamp=t0 + 1_000)
        child = tracer.start_span(
            "SELECT carts",
            kind=SpanKind.CLIENT,
            links=[Link(other, {"link.kind": "retry"})],
            start_time=t0 + 2_000,
        )
        child.set_status(Status(StatusCode.ERROR, "timeout"))
        child.end(end_time=t0 + 1_234_567)
        tracer.start_span("publish", kind=SpanKind.PRODUCER, start_time=t0 + 3_000).end(end_time=t0 + 4_000)
        root.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return memory.get_finished_spans()


def rows(store, sql: str) -> list[dict]:
    result = store.query(sql)
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


@pytest.mark.parametrize("transport", ["grpc", "http", "http-gzip", "grpc-gzip"])
def test_traces_fidelity(collector, store, transport):
    svc, _ = collector
    spans = make_spans()
    span_exporter, _, _ = exporters(transport, svc)
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert span_exporter.export(spans) == SpanExportResult.SUCCESS
    span_exporter.shutdown()
    got = {
        r["SpanName"]: r
        for r in rows(
            store,
            "SELECT *, toUnixTimestamp64Nano(Timestamp) AS ts_ns, "
            "arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS ev_ns FROM otel_traces",
        )
    }
    assert set(got) == {"GET /cart", "SELECT carts", "publish"}
    for sp in spans:
        r = got[sp.name]
        assert r["TraceId"] == f"{sp.context.trace_id:032x}"
        assert r["SpanId"] == f"{sp.context.span_id:016x}"
        assert r["ParentSpanId"] == (f"{sp.parent.span_id:016x}" if sp.parent else "")
        assert r["ts_ns"] == sp.start_time
        assert r["Duration"] == sp.end_time - sp.start_time
        assert r["ServiceName"] == "checkout"
        assert r["ScopeName"] == "shop.cart" and r["ScopeVersion"] == "2.1.0"
        assert r["ResourceAttributes"]["deployment.environment"] == "test"
        assert r["ResourceAttributes"]["host.cpus"] == "4"
        assert r["ResourceAttributes"]["telemetry.sdk.language"] == "python"
    root, child, pub = got["GET /cart"], got["SELECT carts"], got["publish"]
    assert (root["SpanKind"], child["SpanKind"], pub["SpanKind"]) == ("Server", "Client", "Producer")
    assert (root["StatusCode"], child["StatusCode"], pub["StatusCode"]) == ("Ok", "Error", "Unset")
    assert child["StatusMessage"] == "timeout" and child["Duration"] == 1_232_567
    assert root["SpanAttributes"] == ATTRS_STORED
    assert root["Events.Name"] == ["cache.miss"]
    assert root["ev_ns"] == [root["ts_ns"] + 1_000]
    assert root["Events.Attributes"] == [{"key": "cart:1", "size": "3"}]
    assert child["Links.TraceId"] == ["0af7651916cd43dd8448eb211c80319c"]
    assert child["Links.SpanId"] == ["b7ad6b7169203331"]
    assert child["Links.TraceState"] == [""]  # the Python SDK's encoder does not send a link's trace_state
    assert child["Links.Attributes"] == [{"link.kind": "retry"}]


def record_metrics(metric_exporter, tracer_provider):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        shutdown_on_exit=False,  # exactly one export: shutdown would collect and send again
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation()),
        ],
    )
    meter = provider.get_meter("shop.metrics", "1.0")
    meter.create_counter("requests", unit="1", description="served requests").add(5, {"route": "/a"})
    meter.create_up_down_counter("queue.depth").add(-3, {"q": "jobs"})
    hist = meter.create_histogram("latency", unit="ms")
    with tracer_provider.get_tracer("t").start_as_current_span("work") as span:
        for v in (5, 15, 250):
            hist.record(v, {"route": "/a"})
        trace_id = span.get_span_context().trace_id
    exp = meter.create_histogram("latency.exp", unit="ms")
    for v in (1, 2, 4, 8):
        exp.record(v)
    meter.create_gauge("cpu").set(0.75, {"core": 0})
    meter.create_observable_gauge("temperature", callbacks=[lambda _o: [_obs(21.5, {"room": "lab"})]])
    meter.create_observable_counter("pagefaults", callbacks=[lambda _o: [_obs(100, {})]])
    meter.create_observable_up_down_counter("threads", callbacks=[lambda _o: [_obs(7, {})]])
    assert provider.force_flush(timeout_millis=30_000)
    return trace_id


def _obs(value, attrs):
    from opentelemetry.metrics import Observation

    return Observation(value, attrs)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_metrics_fidelity_all_sdk_instruments(collector, store, transport):
    svc, exp = collector
    _, metric_exporter, _ = exporters(transport, svc)
    tracer_provider = TracerProvider(resource=RESOURCE)
    trace_id = record_metrics(metric_exporter, tracer_provider)
    sent = [
        ExportMetricsServiceRequest.FromString(p) for sig, ps in exp.batches if sig == "metrics" for p in ps
    ]
    sent_points = {
        m.name: getattr(m, m.WhichOneof("data")).data_points[0]
        for req in sent
        for rm in req.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    ns = "toUnixTimestamp64Nano(TimeUnix) AS t_ns, toUnixTimestamp64Nano(StartTimeUnix) AS s_ns"

    sums = {r["MetricName"]: r for r in rows(store, f"SELECT *, {ns} FROM otel_metrics_sum")}
    assert set(sums) == {"requests", "queue.depth", "pagefaults", "threads"}
    req = sums["requests"]
    assert (req["Value"], req["IsMonotonic"], req["AggregationTemporality"]) == (5.0, True, 2)
    assert req["Attributes"] == {"route": "/a"} and req["MetricUnit"] == "1"
    assert req["MetricDescription"] == "served requests" and req["ServiceName"] == "checkout"
    assert req["ScopeName"] == "shop.metrics" and req["ScopeVersion"] == "1.0"
    assert (req["t_ns"], req["s_ns"]) == (
        sent_points["requests"].time_unix_nano,
        sent_points["requests"].start_time_unix_nano,
    )
    assert (sums["queue.depth"]["Value"], sums["queue.depth"]["IsMonotonic"]) == (-3.0, False)
    assert (sums["pagefaults"]["Value"], sums["pagefaults"]["IsMonotonic"]) == (100.0, True)
    assert (sums["threads"]["Value"], sums["threads"]["IsMonotonic"]) == (7.0, False)

    gauges = {r["MetricName"]: r for r in rows(store, f"SELECT *, {ns} FROM otel_metrics_gauge")}
    assert gauges["cpu"]["Value"] == 0.75 and gauges["cpu"]["Attributes"] == {"core": "0"}
    assert gauges["temperature"]["Value"] == 21.5 and gauges["temperature"]["Attributes"] == {"room": "lab"}
    assert gauges["temperature"]["t_ns"] == sent_points["temperature"].time_unix_nano

    (h,) = rows(store, f"SELECT *, {ns} FROM otel_metrics_histogram")
    sp = sent_points["latency"]
    assert (h["MetricName"], h["Count"], h["Sum"], h["Min"], h["Max"]) == ("latency", 3, 270.0, 5.0, 250.0)
    assert h["ExplicitBounds"] == list(sp.explicit_bounds) and h["BucketCounts"] == list(sp.bucket_counts)
    assert sum(h["BucketCounts"]) == 3 and h["AggregationTemporality"] == 2
    assert h["Exemplars.TraceId"] and set(h["Exemplars.TraceId"]) == {f"{trace_id:032x}"}
    assert sorted(h["Exemplars.Value"]) == sorted(e.as_double or e.as_int for e in sp.exemplars)
    assert all(len(s) == 16 for s in h["Exemplars.SpanId"])

    (e,) = rows(store, f"SELECT *, {ns} FROM otel_metrics_exponential_histogram")
    sp = sent_points["latency.exp"]
    assert (e["MetricName"], e["Count"], e["Sum"], e["Min"], e["Max"]) == ("latency.exp", 4, 15.0, 1.0, 8.0)
    assert (e["Scale"], e["ZeroCount"]) == (sp.scale, sp.zero_count)
    assert e["PositiveOffset"] == sp.positive.offset
    assert (
        e["PositiveBucketCounts"] == list(sp.positive.bucket_counts) and sum(e["PositiveBucketCounts"]) == 4
    )


def test_summary_and_json_metrics(collector, store):
    svc, _ = collector
    now = time.time_ns()
    body = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "legacy"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "rpc.duration",
                                "summary": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(now),
                                            "count": "10",
                                            "sum": 12.5,
                                            "quantileValues": [
                                                {"quantile": 0.5, "value": 1.0},
                                                {"quantile": 0.99, "value": 3.5},
                                            ],
                                        }
                                    ]
                                },
                            },
                            {
                                "name": "up",
                                "gauge": {
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": now,
                                            "asInt": "1",
                                            "exemplars": [
                                                {
                                                    "timeUnixNano": str(now),
                                                    "asDouble": 0.5,
                                                    "traceId": "0AF7651916CD43DD8448EB211C80319C",
                                                    "spanId": "B7AD6B7169203331",
                                                    "filteredAttributes": [
                                                        {"key": "user", "value": {"stringValue": "u1"}}
                                                    ],
                                                }
                                            ],
                                        }
                                    ]
                                },
                            },
                        ]
                    }
                ],
            }
        ]
    }
    r = httpx.post(f"http://127.0.0.1:{svc.http_port}/v1/metrics", json=body, timeout=30)
    assert r.status_code == 200 and r.json() == {}
    (s,) = rows(store, "SELECT *, toUnixTimestamp64Nano(TimeUnix) AS t FROM otel_metrics_summary")
    assert (s["ServiceName"], s["Count"], s["Sum"], s["t"]) == ("legacy", 10, 12.5, now)
    assert s["ValueAtQuantiles.Quantile"] == [0.5, 0.99] and s["ValueAtQuantiles.Value"] == [1.0, 3.5]
    (g,) = rows(
        store,
        "SELECT MetricName, Value, Exemplars.TraceId AS t, Exemplars.SpanId AS s, Exemplars.Value AS v, "
        "Exemplars.FilteredAttributes AS a FROM otel_metrics_gauge",
    )
    assert g == {
        "MetricName": "up",
        "Value": 1.0,
        "t": ["0af7651916cd43dd8448eb211c80319c"],
        "s": ["b7ad6b7169203331"],
        "v": [0.5],
        "a": [{"user": "u1"}],
    }


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_logs_fidelity_every_body_type(collector, store, transport):
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    svc, _ = collector
    _, _, log_exporter = exporters(transport, svc)
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    logger = provider.get_logger("shop.logs", "3.0")
    tracer = TracerProvider(resource=RESOURCE).get_tracer("t")
    bodies = {
        "str": ("hello world", "hello world"),
        "int": (42, "42"),
        "float": (2.5, "2.5"),
        "bool": (True, "true"),
        "bytes": (b"\x00\x01\xff", base64.b64encode(b"\x00\x01\xff").decode()),
        "list": (["a", 1, True], '["a",1,true]'),
        "dict": ({"k": "v", "n": 1, "nested": {"x": [1.5]}}, '{"k":"v","n":1,"nested":{"x":[1.5]}}'),
    }
    t0 = time.time_ns()
    with tracer.start_as_current_span("handler") as span:
        ctx = span.get_span_context()
        for i, (kind, (body, _)) in enumerate(bodies.items()):
            logger.emit(
                timestamp=t0 + i,
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body=body,
                attributes={"kind": kind, "n": i},
            )
    provider.shutdown()
    got = {
        r["LogAttributes"]["kind"]: r
        for r in rows(store, "SELECT *, toUnixTimestamp64Nano(Timestamp) AS t FROM otel_logs")
    }
    assert set(got) == set(bodies)
    for i, (kind, (_, stored)) in enumerate(bodies.items()):
        r = got[kind]
        assert r["Body"] == stored, kind
        assert r["t"] == t0 + i
        assert (r["SeverityText"], r["SeverityNumber"]) == ("WARN", 13)
        assert r["TraceId"] == f"{ctx.trace_id:032x}" and r["SpanId"] == f"{ctx.span_id:016x}"
        assert r["TraceFlags"] == int(ctx.trace_flags)
        assert r["LogAttributes"]["n"] == str(i)
        assert (r["ServiceName"], r["ScopeName"], r["ScopeVersion"]) == ("checkout", "shop.logs", "3.0")
    assert json.loads(got["dict"]["Body"])["nested"] == {"x": [1.5]}


def test_logs_with_invalid_ids_are_kept_without_trace(collector, store):
    svc, _ = collector
    body = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": str(time.time_ns()),
                                "traceId": "abcd",
                                "spanId": "00",
                                "body": {"stringValue": "orphan"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    r = httpx.post(f"http://127.0.0.1:{svc.http_port}/v1/logs", json=body, timeout=30)
    assert r.status_code == 200 and r.json() == {}
    (row,) = rows(store, "SELECT Body, TraceId, SpanId FROM otel_logs")
    assert row == {"Body": "orphan", "TraceId": "", "SpanId": ""}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_unknown_protobuf_fields_from_newer_clients_are_ignored(collector, store):
    """Fields a newer OTLP version adds reach ClickHouse's decoder untouched (the receiver passes
    the bytes through) and must be skipped there, at every nesting level."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    svc, exp = collector
    unknown = _varint((999 << 3) | 0) + _varint(12345) + _varint((998 << 3) | 2) + _varint(3) + b"new"
    now = time.time_ns()
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="future", start_time_unix_nano=now)
    span.attributes.add(key="k").value.string_value = "v"
    span = Span.FromString(span.SerializeToString() + unknown)
    ss = ScopeSpans.FromString(ScopeSpans(spans=[span]).SerializeToString() + unknown)
    rs = ResourceSpans.FromString(ResourceSpans(scope_spans=[ss]).SerializeToString() + unknown)
    body = ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString() + unknown
    r = httpx.post(
        f"http://127.0.0.1:{svc.http_port}/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert r.status_code == 200
    assert exp.batches[-1][1] == [body]  # passed through untouched
    (row,) = rows(store, "SELECT SpanName, SpanId, SpanAttributes FROM otel_traces")
    assert row == {"SpanName": "future", "SpanId": "02" * 8, "SpanAttributes": {"k": "v"}}
