"""The ClickHouse-side OTLP schema agrees with opentelemetry-proto's field numbers and wire types."""

from __future__ import annotations

import re

from forewarn.collector.otlp_schema import PROTO
from google.protobuf.descriptor import FieldDescriptor as F
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

REAL = {
    d.name: d
    for mod in (common_pb2, resource_pb2, trace_pb2, logs_pb2, metrics_pb2)
    for d in mod.DESCRIPTOR.message_types_by_name.values()
}
REAL |= {
    "Event": trace_pb2.Span.Event.DESCRIPTOR,
    "Link": trace_pb2.Span.Link.DESCRIPTOR,
    "Buckets": metrics_pb2.ExponentialHistogramDataPoint.Buckets.DESCRIPTOR,
    "ValueAtQuantile": metrics_pb2.SummaryDataPoint.ValueAtQuantile.DESCRIPTOR,
    "ExportTraceServiceRequest": trace_service_pb2.ExportTraceServiceRequest.DESCRIPTOR,
    "ExportLogsServiceRequest": logs_service_pb2.ExportLogsServiceRequest.DESCRIPTOR,
    "ExportMetricsServiceRequest": metrics_service_pb2.ExportMetricsServiceRequest.DESCRIPTOR,
}
# Declared type -> the wire type it reads; an enum reads as int32, an embedded message as bytes.
WIRE = {
    "string": "len",
    "bytes": "len",
    "bool": "varint",
    "int32": "varint",
    "int64": "varint",
    "uint32": "varint",
    "uint64": "varint",
    "sint32": "zigzag",
    "fixed64": "i64",
    "sfixed64": "i64",
    "double": "i64",
    "fixed32": "i32",
}
REAL_WIRE = {
    F.TYPE_STRING: "len",
    F.TYPE_BYTES: "len",
    F.TYPE_MESSAGE: "len",
    F.TYPE_BOOL: "varint",
    F.TYPE_INT32: "varint",
    F.TYPE_INT64: "varint",
    F.TYPE_UINT32: "varint",
    F.TYPE_UINT64: "varint",
    F.TYPE_ENUM: "varint",
    F.TYPE_SINT32: "zigzag",
    F.TYPE_FIXED64: "i64",
    F.TYPE_SFIXED64: "i64",
    F.TYPE_DOUBLE: "i64",
    F.TYPE_FIXED32: "i32",
}


def declared() -> dict[str, list[tuple[bool, str, str, int]]]:
    out = {}
    for name, body in re.findall(r"message (\w+) \{(.*?)\}\s*(?=message|\Z)", PROTO, re.S):
        out[name] = [
            (bool(rep), typ, field, int(num))
            for rep, typ, field, num in re.findall(r"(repeated )?(\w+) (\w+) = (\d+);", body)
        ]
    return out


def test_every_declared_field_matches_opentelemetry_proto():
    messages = declared()
    assert len(messages) >= 30
    for name, fields in messages.items():
        real = REAL[name]
        for rep, typ, field, num in fields:
            f = real.fields_by_name[field]
            assert f.number == num, (name, field)
            assert f.is_repeated == rep, (name, field)
            wire = WIRE.get(typ, "len")  # other names are messages of this schema
            assert REAL_WIRE[f.type] == wire, (name, field, typ)
