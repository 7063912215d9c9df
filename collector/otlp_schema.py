"""The OTLP export requests as ClickHouse's ``Protobuf`` input format reads them.

ClickHouse decodes the serialized requests itself (see :mod:`forewarn.collector.convert`), so it
needs the OTLP messages declared in a ``.proto`` text (passed inline with
``format_schema_source = 'string'``: no schema file on the server) and a column structure naming
the fields it should materialize. Field numbers and wire types match opentelemetry-proto 1.x
(``tests/test_convert_schema.py`` checks them against the generated Python descriptors).

A ClickHouse schema cannot be recursive, so ``AnyValue`` is declared one level deep: its
``array_value`` and ``kvlist_value`` are read as raw bytes (the wire format of an embedded message
and of ``bytes`` is the same). Requests carrying such values are pre-rendered in Python before
ClickHouse sees them (:func:`forewarn.collector.convert_anyvalue.prerender`). Enums are declared as
``int32`` so that unknown enum numbers reach SQL untouched.

>>> "message ExportTraceServiceRequest" in PROTO
True
>>> STRUCTURE["otel_traces"].startswith("resource_spans Array(Tuple(resource Tuple(")
True
"""

from __future__ import annotations

PROTO = """
syntax = "proto3";
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
  double double_value = 4; bytes array_value = 5; bytes kvlist_value = 6; bytes bytes_value = 7; } }
message KeyValue { string key = 1; AnyValue value = 2; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3;
  uint32 dropped_attributes_count = 4; }

message Status { string message = 2; int32 code = 3; }
message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3;
  uint32 dropped_attributes_count = 4; }
message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3;
  repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
message Span { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10; repeated Event events = 11;
  uint32 dropped_events_count = 12; repeated Link links = 13; uint32 dropped_links_count = 14;
  Status status = 15; fixed32 flags = 16; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }

message LogRecord { fixed64 time_unix_nano = 1; int32 severity_number = 2; string severity_text = 3;
  AnyValue body = 5; repeated KeyValue attributes = 6; uint32 dropped_attributes_count = 7;
  fixed32 flags = 8; bytes trace_id = 9; bytes span_id = 10; fixed64 observed_time_unix_nano = 11;
  string event_name = 12; }
message ScopeLogs { InstrumentationScope scope = 1; repeated LogRecord log_records = 2; string schema_url = 3; }
message ResourceLogs { Resource resource = 1; repeated ScopeLogs scope_logs = 2; string schema_url = 3; }
message ExportLogsServiceRequest { repeated ResourceLogs resource_logs = 1; }

message Exemplar { fixed64 time_unix_nano = 2; oneof value { double as_double = 3; sfixed64 as_int = 6; }
  bytes span_id = 4; bytes trace_id = 5; repeated KeyValue filtered_attributes = 7; }
message NumberDataPoint { fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
  oneof value { double as_double = 4; sfixed64 as_int = 6; } repeated Exemplar exemplars = 5;
  repeated KeyValue attributes = 7; uint32 flags = 8; }
message Gauge { repeated NumberDataPoint data_points = 1; }
message Sum { repeated NumberDataPoint data_points = 1; int32 aggregation_temporality = 2; bool is_monotonic = 3; }
message HistogramDataPoint { fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3; fixed64 count = 4;
  double sum = 5; repeated fixed64 bucket_counts = 6; repeated double explicit_bounds = 7;
  repeated Exemplar exemplars = 8; repeated KeyValue attributes = 9; uint32 flags = 10; double min = 11;
  double max = 12; }
message Histogram { repeated HistogramDataPoint data_points = 1; int32 aggregation_temporality = 2; }
message Buckets { sint32 offset = 1; repeated uint64 bucket_counts = 2; }
message ExponentialHistogramDataPoint { repeated KeyValue attributes = 1; fixed64 start_time_unix_nano = 2;
  fixed64 time_unix_nano = 3; fixed64 count = 4; double sum = 5; sint32 scale = 6; fixed64 zero_count = 7;
  Buckets positive = 8; Buckets negative = 9; uint32 flags = 10; repeated Exemplar exemplars = 11;
  double min = 12; double max = 13; double zero_threshold = 14; }
message ExponentialHistogram { repeated ExponentialHistogramDataPoint data_points = 1;
  int32 aggregation_temporality = 2; }
message ValueAtQuantile { double quantile = 1; double value = 2; }
message SummaryDataPoint { fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3; fixed64 count = 4;
  double sum = 5; repeated ValueAtQuantile quantile_values = 6; repeated KeyValue attributes = 7;
  uint32 flags = 8; }
message Summary { repeated SummaryDataPoint data_points = 1; }
message Metric { string name = 1; string description = 2; string unit = 3;
  oneof data { Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9;
  ExponentialHistogram exponential_histogram = 10; Summary summary = 11; } }
message ScopeMetrics { InstrumentationScope scope = 1; repeated Metric metrics = 2; string schema_url = 3; }
message ResourceMetrics { Resource resource = 1; repeated ScopeMetrics scope_metrics = 2; string schema_url = 3; }
message ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }
"""

# Per signal: a request's resource list, a resource's scope list, a scope's item list.
LEVELS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}
# Per metric table: its member of the ``Metric.data`` oneof and that member's field number.
METRIC_KINDS = {
    "otel_metrics_gauge": ("gauge", 5),
    "otel_metrics_sum": ("sum", 7),
    "otel_metrics_histogram": ("histogram", 9),
    "otel_metrics_exponential_histogram": ("exponential_histogram", 10),
    "otel_metrics_summary": ("summary", 11),
}
MESSAGE = {
    "traces": "ExportTraceServiceRequest",
    "logs": "ExportLogsServiceRequest",
    "metrics": "ExportMetricsServiceRequest",
}

# With input_format_protobuf_oneof_presence, a column named after a oneof tells which member
# was on the wire (0 = none), so an int 0 is told apart from an absent value.
_ANY_KINDS = "'none'=0,'string'=1,'bool'=2,'int'=3,'double'=4,'array'=5,'kvlist'=6,'bytes'=7"
ANY = (
    "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, "
    f"array_value String, kvlist_value String, bytes_value String, value Enum8({_ANY_KINDS}))"
)
KVS = f"Array(Tuple(key String, value {ANY}))"
# Oneof presence enums carry the member's field number, which differs between the two messages.
_POINT_VALUE = "Enum8('none'=0,'as_double'=4,'as_int'=6)"
_EXEMPLAR_VALUE = "Enum8('none'=0,'as_double'=3,'as_int'=6)"
_RESOURCE = f"resource Tuple(attributes {KVS}, dropped_attributes_count UInt32)"
_SCOPE = f"scope Tuple(name String, version String, attributes {KVS}, dropped_attributes_count UInt32)"
_EXEMPLARS = (
    f"exemplars Array(Tuple(time_unix_nano UInt64, as_double Float64, as_int Int64, value {_EXEMPLAR_VALUE}, "
    f"span_id String, trace_id String, filtered_attributes {KVS}))"
)
_POINT_HEAD = (
    f"attributes {KVS}, start_time_unix_nano UInt64, time_unix_nano UInt64, flags UInt32, {_EXEMPLARS}"
)
_NUMBER_POINTS = (
    f"data_points Array(Tuple({_POINT_HEAD}, as_double Float64, as_int Int64, value {_POINT_VALUE}))"
)
_HIST_POINTS = (
    f"data_points Array(Tuple({_POINT_HEAD}, count UInt64, sum Float64, bucket_counts Array(UInt64), "
    "explicit_bounds Array(Float64), min Float64, max Float64))"
)
_BUCKETS = "Tuple(offset Int32, bucket_counts Array(UInt64))"
_EXP_POINTS = (
    f"data_points Array(Tuple({_POINT_HEAD}, count UInt64, sum Float64, scale Int32, zero_count UInt64, "
    f"positive {_BUCKETS}, negative {_BUCKETS}, min Float64, max Float64))"
)
_SUMMARY_POINTS = (
    f"data_points Array(Tuple(attributes {KVS}, start_time_unix_nano UInt64, time_unix_nano UInt64, "
    "flags UInt32, count UInt64, sum Float64, quantile_values Array(Tuple(quantile Float64, value Float64))))"
)
_SPAN = (
    "Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, name String, "
    f"kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, attributes {KVS}, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {KVS})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {KVS})), "
    "status Tuple(message String, code Int32))"
)
_LOG = (
    "Tuple(time_unix_nano UInt64, observed_time_unix_nano UInt64, severity_number Int32, "
    f"severity_text String, body {ANY}, attributes {KVS}, flags UInt32, trace_id String, span_id String, "
    "event_name String)"
)
_METRIC_DATA = {
    "gauge": f"gauge Tuple({_NUMBER_POINTS})",
    "sum": f"sum Tuple({_NUMBER_POINTS}, aggregation_temporality Int32, is_monotonic Bool)",
    "histogram": f"histogram Tuple({_HIST_POINTS}, aggregation_temporality Int32)",
    "exponential_histogram": f"exponential_histogram Tuple({_EXP_POINTS}, aggregation_temporality Int32)",
    "summary": f"summary Tuple({_SUMMARY_POINTS})",
}


def _envelope(resource_field: str, scope_field: str, items_field: str, item: str) -> str:
    return (
        f"{resource_field} Array(Tuple({_RESOURCE}, {scope_field} Array(Tuple({_SCOPE}, "
        f"{items_field} Array({item}), schema_url String)), schema_url String))"
    )


# Per target table. A metric table's structure names only its own point type: the reader skips
# the other kinds' bytes instead of decoding them once per metric table.
STRUCTURE = {
    "otel_traces": _envelope("resource_spans", "scope_spans", "spans", _SPAN),
    "otel_logs": _envelope("resource_logs", "scope_logs", "log_records", _LOG),
    **{
        f"otel_metrics_{kind}": _envelope(
            "resource_metrics",
            "scope_metrics",
            "metrics",
            f"Tuple(name String, description String, unit String, {data})",
        )
        for kind, data in _METRIC_DATA.items()
    },
}
