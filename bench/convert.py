"""Micro-benchmark of the conversion hot path: OTLP requests -> exporter tables, in one process.

Compares, on the same realistic batches and the same embedded chDB store:

* ``clickhouse``: ``forewarn.collector.convert.insert_requests`` (ClickHouse decodes the
  protobuf and flattens it in SQL);
* ``python``: the alternative it replaced (the floor): upb decode, a Python loop flattening
  into columns with the same stringification, and a columnar clickhouse-connect insert.

Prints spans/s, metric points/s and log records/s for both, wall-clock and per CPU-second
(chDB runs in this process, so CPU time is what one core would do), and the ratio. The last line,
``traces+arrays``, gives every span an array attribute: the case the ClickHouse path hands to
Python (a failed statement, then Python rendering). The two paths take turns batch by batch and
background merges are stopped on the benchmark's own database, so neither pays for the other.
``--requests`` is the group-commit size: each statement has a fixed cost, so it matters.

    .venv/bin/python bench/convert.py [--batches 4] [--requests 8] [--spans 512]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import clickhouse_connect
from forewarn.collector.convert import insert_requests
from forewarn.collector.convert_anyvalue import as_string
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from forewarn.config import TTLSettings
from forewarn.storage.migrations import migrate
from forewarn.storage.schema import SIGNAL_TABLES, Schema

KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS = ("Unset", "Ok", "Error")


# --- realistic batches ---------------------------------------------------------------------


def _value(rnd: random.Random, i: int) -> AnyValue:
    kind = i % 7
    if kind < 4:
        return AnyValue(string_value=f"value-{rnd.randrange(10_000)}-{'x' * rnd.randrange(4, 24)}")
    if kind == 4:
        return AnyValue(int_value=rnd.randrange(-(10**9), 10**9))
    if kind == 5:
        return AnyValue(double_value=rnd.random() * 1000)
    return AnyValue(bool_value=rnd.random() < 0.5)


def _attrs(rnd: random.Random, n: int, prefix: str) -> list[KeyValue]:
    return [KeyValue(key=f"{prefix}.attr_{i}", value=_value(rnd, i)) for i in range(n)]


def _resource(rnd: random.Random, service: str) -> list[KeyValue]:
    return [
        KeyValue(key="service.name", value=AnyValue(string_value=service)),
        KeyValue(key="service.version", value=AnyValue(string_value="1.4.2")),
        KeyValue(key="host.name", value=AnyValue(string_value=f"node-{rnd.randrange(50)}")),
        KeyValue(key="k8s.pod.name", value=AnyValue(string_value=f"{service}-{uuid.uuid4().hex[:10]}")),
        KeyValue(key="telemetry.sdk.language", value=AnyValue(string_value="python")),
        KeyValue(key="process.pid", value=AnyValue(int_value=rnd.randrange(1, 65536))),
    ]


def _scope(rnd: random.Random, resources, scopes_field: str, name: str):
    """One resource (a random service) with one scope named ``name``; returns the scope list item."""
    r = resources.add()
    r.resource.attributes.extend(_resource(rnd, f"svc-{rnd.randrange(8)}"))
    scope = getattr(r, scopes_field).add()
    scope.scope.name = name
    return scope


def trace_request(rnd: random.Random, spans: int, arrays: bool = False) -> bytes:
    """``arrays``: every span also carries an array attribute (the Python-rendered fallback)."""
    req = ExportTraceServiceRequest()
    ss = _scope(rnd, req.resource_spans, "scope_spans", "opentelemetry.instrumentation.flask")
    ss.scope.version = "0.48b0"
    now = time.time_ns()
    for i in range(spans):
        start = now - rnd.randrange(10**9)
        sp = ss.spans.add(
            trace_id=rnd.randbytes(16),
            span_id=rnd.randbytes(8),
            parent_span_id=rnd.randbytes(8) if i % 4 else b"",
            name=f"GET /api/v1/items/{i % 30}",
            kind=1 + i % 5,
            start_time_unix_nano=start,
            end_time_unix_nano=start + rnd.randrange(10**4, 10**8),
        )
        sp.attributes.extend(_attrs(rnd, rnd.randrange(10, 21), "span"))
        if arrays:
            tags = ArrayValue(values=[AnyValue(string_value=f"tag{j}") for j in range(3)])
            sp.attributes.add(key="span.tags", value=AnyValue(array_value=tags))
        sp.status.code = 2 if i % 50 == 0 else 1
        if i % 10 == 0:
            ev = sp.events.add(time_unix_nano=start + 1000, name="exception")
            ev.attributes.extend(_attrs(rnd, 3, "exception"))
        if i % 25 == 0:
            sp.links.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8))
    return req.SerializeToString()


def log_request(rnd: random.Random, records: int) -> bytes:
    req = ExportLogsServiceRequest()
    sl = _scope(rnd, req.resource_logs, "scope_logs", "app.logger")
    now = time.time_ns()
    for i in range(records):
        rec = sl.log_records.add(
            time_unix_nano=now - rnd.randrange(10**9),
            observed_time_unix_nano=now,
            severity_number=9 if i % 10 else 17,
            severity_text="INFO" if i % 10 else "ERROR",
            trace_id=rnd.randbytes(16),
            span_id=rnd.randbytes(8),
            flags=1,
        )
        rec.body.string_value = (
            f"request {i} handled in {rnd.randrange(1000)} ms for user {rnd.randrange(10**6)}"
        )
        rec.attributes.extend(_attrs(rnd, rnd.randrange(5, 11), "log"))
    return req.SerializeToString()


def metric_request(rnd: random.Random, points: int) -> bytes:
    """Gauges, sums and histograms (the common kinds), ``points`` data points in all."""
    req = ExportMetricsServiceRequest()
    sm = _scope(rnd, req.resource_metrics, "scope_metrics", "app.meter")
    now = time.time_ns()
    per_metric = 16
    for m in range(max(1, points // per_metric)):
        metric = sm.metrics.add(name=f"app.metric_{m}", description="a metric", unit="ms")
        kind = m % 3
        for p in range(per_metric):
            head = {
                "start_time_unix_nano": now - 60 * 10**9,
                "time_unix_nano": now,
                "attributes": _attrs(rnd, 4, "dp"),
            }
            if kind == 0:
                metric.gauge.data_points.add(**head, as_double=rnd.random())
            elif kind == 1:
                metric.sum.aggregation_temporality = 2
                metric.sum.is_monotonic = True
                metric.sum.data_points.add(**head, as_int=rnd.randrange(10**6))
            else:
                metric.histogram.aggregation_temporality = 2
                metric.histogram.data_points.add(
                    **head,
                    count=100 + p,
                    sum=rnd.random() * 1000,
                    bucket_counts=[rnd.randrange(20) for _ in range(11)],
                    explicit_bounds=[5, 10, 25, 50, 75, 100, 250, 500, 750, 1000],
                    min=0.1,
                    max=999.0,
                )
    return req.SerializeToString()


# --- the Python columnar alternative (the floor) -------------------------------------------


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _amap(kvs) -> dict[str, str]:
    return {kv.key: as_string(kv.value) for kv in kvs}


def _hex(b: bytes, size: int) -> str:
    return b.hex() if len(b) == size and any(b) else ""


def python_traces(client, payloads: Sequence[bytes], database: str) -> int:
    cols: dict[str, list] = {
        n: []
        for n in [
            "Timestamp",
            "TraceId",
            "SpanId",
            "ParentSpanId",
            "TraceState",
            "SpanName",
            "SpanKind",
            "ServiceName",
            "ResourceAttributes",
            "ScopeName",
            "ScopeVersion",
            "SpanAttributes",
            "Duration",
            "StatusCode",
            "StatusMessage",
            "Events.Timestamp",
            "Events.Name",
            "Events.Attributes",
            "Links.TraceId",
            "Links.SpanId",
            "Links.TraceState",
            "Links.Attributes",
        ]
    }
    c = cols
    for p in payloads:
        for rs in ExportTraceServiceRequest.FromString(p).resource_spans:
            res = _amap(rs.resource.attributes)
            svc = res.get("service.name", "")
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    c["Timestamp"].append(_dt(sp.start_time_unix_nano))
                    c["TraceId"].append(_hex(sp.trace_id, 16))
                    c["SpanId"].append(_hex(sp.span_id, 8))
                    c["ParentSpanId"].append(_hex(sp.parent_span_id, 8))
                    c["TraceState"].append(sp.trace_state)
                    c["SpanName"].append(sp.name)
                    c["SpanKind"].append(KINDS[sp.kind] if 0 <= sp.kind < 6 else "")
                    c["ServiceName"].append(svc)
                    c["ResourceAttributes"].append(res)
                    c["ScopeName"].append(ss.scope.name)
                    c["ScopeVersion"].append(ss.scope.version)
                    c["SpanAttributes"].append(_amap(sp.attributes))
                    c["Duration"].append(max(0, sp.end_time_unix_nano - sp.start_time_unix_nano))
                    c["StatusCode"].append(STATUS[sp.status.code] if 0 <= sp.status.code < 3 else "")
                    c["StatusMessage"].append(sp.status.message)
                    c["Events.Timestamp"].append([_dt(e.time_unix_nano) for e in sp.events])
                    c["Events.Name"].append([e.name for e in sp.events])
                    c["Events.Attributes"].append([_amap(e.attributes) for e in sp.events])
                    c["Links.TraceId"].append([_hex(lk.trace_id, 16) for lk in sp.links])
                    c["Links.SpanId"].append([_hex(lk.span_id, 8) for lk in sp.links])
                    c["Links.TraceState"].append([lk.trace_state for lk in sp.links])
                    c["Links.Attributes"].append([_amap(lk.attributes) for lk in sp.links])
    client.insert(
        "otel_traces", list(cols.values()), column_names=list(cols), database=database, column_oriented=True
    )
    return len(cols["Timestamp"])


def python_logs(client, payloads: Sequence[bytes], database: str) -> int:
    names = [
        "Timestamp",
        "TraceId",
        "SpanId",
        "TraceFlags",
        "SeverityText",
        "SeverityNumber",
        "ServiceName",
        "Body",
        "ResourceSchemaUrl",
        "ResourceAttributes",
        "ScopeSchemaUrl",
        "ScopeName",
        "ScopeVersion",
        "ScopeAttributes",
        "LogAttributes",
        "EventName",
    ]
    c: dict[str, list] = {n: [] for n in names}
    for p in payloads:
        for rl in ExportLogsServiceRequest.FromString(p).resource_logs:
            res = _amap(rl.resource.attributes)
            svc = res.get("service.name", "")
            for sl in rl.scope_logs:
                scope_attrs = _amap(sl.scope.attributes)
                for r in sl.log_records:
                    c["Timestamp"].append(_dt(r.time_unix_nano or r.observed_time_unix_nano))
                    c["TraceId"].append(_hex(r.trace_id, 16))
                    c["SpanId"].append(_hex(r.span_id, 8))
                    c["TraceFlags"].append(r.flags & 0xFF)
                    c["SeverityText"].append(r.severity_text)
                    c["SeverityNumber"].append(r.severity_number & 0xFF)
                    c["ServiceName"].append(svc)
                    c["Body"].append(as_string(r.body))
                    c["ResourceSchemaUrl"].append(rl.schema_url)
                    c["ResourceAttributes"].append(res)
                    c["ScopeSchemaUrl"].append(sl.schema_url)
                    c["ScopeName"].append(sl.scope.name)
                    c["ScopeVersion"].append(sl.scope.version)
                    c["ScopeAttributes"].append(scope_attrs)
                    c["LogAttributes"].append(_amap(r.attributes))
                    c["EventName"].append(r.event_name)
    client.insert("otel_logs", list(c.values()), column_names=names, database=database, column_oriented=True)
    return len(c["Timestamp"])


_METRIC_HEAD = [
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
    "Flags",
]
_METRIC_TAIL = {
    "gauge": ["Value"],
    "sum": ["Value", "AggregationTemporality", "IsMonotonic"],
    "histogram": ["Count", "Sum", "BucketCounts", "ExplicitBounds", "Min", "Max", "AggregationTemporality"],
}


def python_metrics(client, payloads: Sequence[bytes], database: str) -> int:
    """Gauge, sum and histogram points (what the benchmark batches hold), exemplars left out."""
    tables = {k: {n: [] for n in _METRIC_HEAD + v} for k, v in _METRIC_TAIL.items()}
    total = 0
    for p in payloads:
        for rm in ExportMetricsServiceRequest.FromString(p).resource_metrics:
            res = _amap(rm.resource.attributes)
            svc = res.get("service.name", "")
            for sm in rm.scope_metrics:
                sc = sm.scope
                scope_attrs = _amap(sc.attributes)
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind not in tables:
                        continue
                    c, data = tables[kind], getattr(m, kind)
                    head = (res, rm.schema_url, sc.name, sc.version, scope_attrs, sc.dropped_attributes_count)
                    head += (sm.schema_url, svc, m.name, m.description, m.unit)
                    for dp in data.data_points:
                        for n, v in zip(_METRIC_HEAD, head, strict=False):
                            c[n].append(v)
                        c["Attributes"].append(_amap(dp.attributes))
                        c["StartTimeUnix"].append(_dt(dp.start_time_unix_nano))
                        c["TimeUnix"].append(_dt(dp.time_unix_nano))
                        c["Flags"].append(dp.flags)
                        if kind == "histogram":
                            c["Count"].append(dp.count)
                            c["Sum"].append(dp.sum)
                            c["BucketCounts"].append(list(dp.bucket_counts))
                            c["ExplicitBounds"].append(list(dp.explicit_bounds))
                            c["Min"].append(dp.min)
                            c["Max"].append(dp.max)
                        else:
                            is_int = dp.WhichOneof("value") == "as_int"
                            c["Value"].append(float(dp.as_int) if is_int else dp.as_double)
                        if kind != "gauge":
                            c["AggregationTemporality"].append(data.aggregation_temporality)
                        if kind == "sum":
                            c["IsMonotonic"].append(data.is_monotonic)
                        total += 1
    for kind, c in tables.items():
        if c["TimeUnix"]:
            client.insert(
                f"otel_metrics_{kind}",
                list(c.values()),
                column_names=list(c),
                database=database,
                column_oriented=True,
            )
    return total


# --- measurement ---------------------------------------------------------------------------


def measure(paths: dict[str, Callable[[int], int]], batches: int) -> dict[str, tuple[float, float]]:
    """Per path: (items per wall second, items per CPU second) over ``batches`` calls each, after
    one warm-up. The paths take turns, so a noisy neighbour hits them alike."""
    totals = {name: [0, 0.0, 0.0] for name in paths}
    for fn in paths.values():
        fn(-1)
    for i in range(batches):
        for name, fn in paths.items():
            w, c = time.perf_counter(), time.process_time()
            totals[name][0] += fn(i)
            totals[name][1] += time.perf_counter() - w
            totals[name][2] += time.process_time() - c
    return {name: (items / wall, items / cpu) for name, (items, wall, cpu) in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=4, help="timed group commits per path and signal")
    ap.add_argument("--requests", type=int, default=8, help="export requests per group commit")
    ap.add_argument("--spans", type=int, default=512, help="spans (log records, points) per request")
    ap.add_argument("--storage", default=None, help="chdb:///dir (default: a temporary directory)")
    args = ap.parse_args()

    dsn = args.storage or f"chdb://{tempfile.mkdtemp(prefix='forewarn-bench-')}"
    client = clickhouse_connect.get_client(dsn=dsn)
    db = "bench_" + uuid.uuid4().hex[:8]
    migrate(client, Schema(db), TTLSettings())
    # Background merges would bill whichever path runs next; they are the same rows either way.
    for table in SIGNAL_TABLES["traces"] + SIGNAL_TABLES["logs"] + SIGNAL_TABLES["metrics"]:
        client.command(f"SYSTEM STOP MERGES `{db}`.`{table}`")
    rnd = random.Random(7)
    build = {
        "traces": trace_request,
        "logs": log_request,
        "metrics": metric_request,
        "traces+arrays": lambda rnd, n: trace_request(rnd, n, arrays=True),
    }
    python = {"traces": python_traces, "logs": python_logs, "metrics": python_metrics}
    unit = {"traces": "spans", "logs": "log records", "metrics": "metric points"}
    print(f"batches={args.batches} requests/batch={args.requests} items/request={args.spans} store={dsn}")
    try:
        for case in ("traces", "metrics", "logs", "traces+arrays"):
            signal = case.split("+")[0]
            payloads = [build[case](rnd, args.spans) for _ in range(args.requests)]
            run_id = uuid.uuid4().hex

            def ours(i: int, signal=signal, payloads=payloads, run_id=run_id) -> int:
                # a distinct token per call: identical content must land again, not be deduplicated
                counts = insert_requests(client, signal, payloads, database=db, dedup_token=f"{run_id}:{i}")
                return sum(counts.values())

            def floor(i: int, signal=signal, payloads=payloads) -> int:
                return python[signal](client, payloads, db)

            got = measure({"ours": ours, "floor": floor}, args.batches)
            (ch_wall, ch_cpu), (py_wall, py_cpu) = got["ours"], got["floor"]
            print(
                f"{case:13s} clickhouse: {ch_wall:9,.0f} {unit[signal]}/s ({ch_cpu:9,.0f}/cpu-s)   "
                f"python columnar: {py_wall:9,.0f}/s ({py_cpu:9,.0f}/cpu-s)   "
                f"ratio {ch_wall / py_wall:4.1f}x wall, {ch_cpu / py_cpu:4.1f}x cpu"
            )
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{db}`")
        client.close()


if __name__ == "__main__":
    main()
