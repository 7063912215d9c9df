"""Field-by-field fidelity of all five metric point types written by forewarn.collector.convert."""

from __future__ import annotations

from forewarn.collector.convert import insert_requests
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)
from test_convert_traces import ARRAY, ARRAY_TEXT, NOW, kv, rows, scalar_attrs, scalar_texts

TABLES = (
    "otel_metrics_gauge",
    "otel_metrics_sum",
    "otel_metrics_histogram",
    "otel_metrics_exponential_histogram",
    "otel_metrics_summary",
)


def exemplars() -> list[Exemplar]:
    return [
        Exemplar(
            time_unix_nano=NOW + 5,
            as_int=7,
            span_id=bytes([1] * 8),
            trace_id=bytes([2] * 16),
            filtered_attributes=[kv("user", string_value="u1"), KeyValue(key="tags", value=ARRAY)],
        ),
        Exemplar(time_unix_nano=NOW + 6, as_double=0.25),
    ]


def point_head(i: int) -> dict:
    return {
        "start_time_unix_nano": NOW - 60 * 10**9,
        "time_unix_nano": NOW + i,
        "attributes": [*scalar_attrs(), kv("point", int_value=i)],
        "flags": i,
    }


def metric(name: str, **data) -> Metric:
    return Metric(name=name, description=f"{name} help", unit="ms", **data)


def metrics_request() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add(schema_url="https://res")
    rm.resource.attributes.extend([kv("service.name", string_value="billing")])
    sm = rm.scope_metrics.add(schema_url="https://scope")
    sm.scope.name, sm.scope.version = "meter", "2.0"
    sm.scope.attributes.append(kv("lib", string_value="x"))
    sm.scope.dropped_attributes_count = 5
    g = metric("g")
    g.gauge.data_points.extend(
        [
            NumberDataPoint(**point_head(0), as_int=-3, exemplars=exemplars()),
            NumberDataPoint(**point_head(1), as_double=2.5),
            NumberDataPoint(**point_head(2)),
        ]
    )
    s = metric("s")
    s.sum.aggregation_temporality = 2
    s.sum.is_monotonic = True
    s.sum.data_points.append(NumberDataPoint(**point_head(0), as_double=10.0, exemplars=exemplars()))
    h = metric("h")
    h.histogram.aggregation_temporality = 1
    h.histogram.data_points.extend(
        [
            HistogramDataPoint(
                **point_head(0),
                count=6,
                sum=12.5,
                bucket_counts=[1, 2, 3],
                explicit_bounds=[1.0, 5.0],
                min=0.5,
                max=9.0,
                exemplars=exemplars(),
            ),
            HistogramDataPoint(**point_head(1), count=0),
        ]
    )
    e = metric("e")
    e.exponential_histogram.aggregation_temporality = 2
    p = ExponentialHistogramDataPoint(
        **point_head(0), count=9, sum=3.5, scale=-2, zero_count=1, min=-1.0, max=4.0, exemplars=exemplars()
    )
    p.positive.offset, p.negative.offset = 3, -4
    p.positive.bucket_counts.extend([1, 2])
    p.negative.bucket_counts.extend([5])
    e.exponential_histogram.data_points.append(p)
    sm_ = metric("q")
    dp = SummaryDataPoint(**point_head(0), count=4, sum=8.0)
    dp.quantile_values.add(quantile=0.5, value=1.5)
    dp.quantile_values.add(quantile=0.99, value=7.0)
    sm_.summary.data_points.append(dp)
    sm.metrics.extend([g, s, h, e, sm_, Metric(name="no_data")])
    return req


COMMON = {
    "ResourceAttributes": {"service.name": "billing"},
    "ResourceSchemaUrl": "https://res",
    "ScopeName": "meter",
    "ScopeVersion": "2.0",
    "ScopeAttributes": {"lib": "x"},
    "ScopeDroppedAttrCount": 5,
    "ScopeSchemaUrl": "https://scope",
    "ServiceName": "billing",
    "MetricUnit": "ms",
}
EXEMPLARS = {
    "Exemplars.FilteredAttributes": [{"user": "u1", "tags": ARRAY_TEXT}, {}],
    "ex_ns": [NOW + 5, NOW + 6],
    "Exemplars.Value": [7.0, 0.25],
    "Exemplars.SpanId": ["01" * 8, "0" * 16],
    "Exemplars.TraceId": ["02" * 16, "0" * 32],
}
NO_EXEMPLARS = {k: [] for k in EXEMPLARS}


def fetch(store, db: str, table: str) -> list[dict]:
    ex = (
        ", arrayMap(x -> toUnixTimestamp64Nano(x), Exemplars.TimeUnix) AS ex_ns"
        if "summary" not in table
        else ""
    )
    got = rows(
        store,
        db,
        f"SELECT *, toUnixTimestamp64Nano(TimeUnix) AS t_ns, toUnixTimestamp64Nano(StartTimeUnix) AS s_ns{ex} "
        f"FROM DB.{table} ORDER BY t_ns",
    )
    for i, row in enumerate(got):
        for k, v in COMMON.items():
            assert row[k] == v, (table, k)
        assert row["MetricDescription"] == f"{row['MetricName']} help"
        assert row["Attributes"] == {**scalar_texts(), "point": str(i)}
        assert (row["t_ns"], row["s_ns"], row["Flags"]) == (NOW + i, NOW - 60 * 10**9, i)
    return got


def pick(row: dict, keys) -> dict:
    return {k: row[k] for k in keys}


def test_all_five_point_types(store, settings):
    db = settings.storage.database
    counts = insert_requests(store, "metrics", [metrics_request().SerializeToString()], database=db)
    assert counts == dict(zip(TABLES, (3, 1, 2, 1, 1), strict=True))

    gauge = fetch(store, db, "otel_metrics_gauge")
    assert [r["Value"] for r in gauge] == [-3.0, 2.5, 0.0]
    assert pick(gauge[0], EXEMPLARS) == EXEMPLARS
    assert pick(gauge[1], EXEMPLARS) == NO_EXEMPLARS

    (s,) = fetch(store, db, "otel_metrics_sum")
    assert (s["Value"], s["AggregationTemporality"], s["IsMonotonic"]) == (10.0, 2, True)
    assert pick(s, EXEMPLARS) == EXEMPLARS

    h0, h1 = fetch(store, db, "otel_metrics_histogram")
    assert pick(
        h0, ("Count", "Sum", "BucketCounts", "ExplicitBounds", "Min", "Max", "AggregationTemporality")
    ) == {
        "Count": 6,
        "Sum": 12.5,
        "BucketCounts": [1, 2, 3],
        "ExplicitBounds": [1.0, 5.0],
        "Min": 0.5,
        "Max": 9.0,
        "AggregationTemporality": 1,
    }
    assert pick(h0, EXEMPLARS) == EXEMPLARS
    # Absent sum/min/max: the exporter writes pdata's zero values.
    assert (h1["Count"], h1["Sum"], h1["Min"], h1["Max"], h1["BucketCounts"]) == (0, 0.0, 0.0, 0.0, [])

    (e,) = fetch(store, db, "otel_metrics_exponential_histogram")
    assert pick(
        e,
        (
            "Count",
            "Sum",
            "Scale",
            "ZeroCount",
            "PositiveOffset",
            "PositiveBucketCounts",
            "NegativeOffset",
            "NegativeBucketCounts",
            "Min",
            "Max",
            "AggregationTemporality",
        ),
    ) == {
        "Count": 9,
        "Sum": 3.5,
        "Scale": -2,
        "ZeroCount": 1,
        "PositiveOffset": 3,
        "PositiveBucketCounts": [1, 2],
        "NegativeOffset": -4,
        "NegativeBucketCounts": [5],
        "Min": -1.0,
        "Max": 4.0,
        "AggregationTemporality": 2,
    }
    assert pick(e, EXEMPLARS) == EXEMPLARS

    (q,) = fetch(store, db, "otel_metrics_summary")
    assert (q["Count"], q["Sum"]) == (4, 8.0)
    assert (q["ValueAtQuantiles.Quantile"], q["ValueAtQuantiles.Value"]) == ([0.5, 0.99], [1.5, 7.0])


def test_metric_tokens_are_per_table(store, settings):
    db = settings.storage.database
    payload = [metrics_request().SerializeToString()]
    for token in ("p0:1-5", "p0:1-5", "p0:6-9"):
        insert_requests(store, "metrics", payload, database=db, dedup_token=token)
    got = {t: rows(store, db, f"SELECT count() AS n FROM DB.{t}")[0]["n"] for t in TABLES}
    assert got == dict(zip(TABLES, (6, 2, 4, 2, 2), strict=True))
