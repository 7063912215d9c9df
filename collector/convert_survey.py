"""A skeleton parse of OTLP export requests: row counts, and arrays in resources and scopes.

:func:`forewarn.collector.convert.insert_requests` needs the rows per table (its return value)
and to know which requests carry array/kvlist attributes at the resource or scope level (those
are rendered in Python up front), but not the items themselves, which ClickHouse decodes. The
request classes built here stop at the item level: spans, log records and metric points stay
undecoded bytes, so upb does a small part of a full decode and Python touches only resources,
scopes and (for metrics) metric headers.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> req = ExportTraceServiceRequest()
>>> req.resource_spans.add().scope_spans.add().spans.add(name="a")  # doctest: +ELLIPSIS
name: "a"...
>>> survey("traces", [req.SerializeToString()])
({'otel_traces': 1}, [False])
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from forewarn.collector.convert_anyvalue import REQUEST_CLASSES, BadPayload
from forewarn.collector.otlp_schema import LEVELS, MESSAGE, METRIC_KINDS
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from forewarn.storage.schema import SIGNAL_TABLES


@cache
def _skeletons() -> dict[str, type]:
    """Request classes that stop at the item level (items kept as bytes), just to count rows."""
    f = descriptor_pb2.FileDescriptorProto(name="forewarn_otlp_skeleton.proto", package="fwskel")
    rep, opt = (
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    msg_t, bytes_t = (
        descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    )

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, num, label, typ, type_name in fields:
            fd = m.field.add(name=fname, number=num, label=label, type=typ)
            if type_name:
                fd.type_name = type_name

    # Resource and scope attributes are decoded just far enough to see arrays/kvlists (proto2
    # syntax: optional fields have presence, so an empty array still counts).
    message("Value", [("array_value", 5, opt, bytes_t, ""), ("kvlist_value", 6, opt, bytes_t, "")])
    message("KeyValue", [("value", 2, opt, msg_t, ".fwskel.Value")])
    message("Resource", [("attributes", 1, rep, msg_t, ".fwskel.KeyValue")])
    message("Scope", [("attributes", 3, rep, msg_t, ".fwskel.KeyValue")])
    message("Points", [("data_points", 1, rep, bytes_t, "")])
    message("Metric", [(k, n, opt, msg_t, ".fwskel.Points") for k, n in METRIC_KINDS.values()])
    for sig, (res, scopes, items) in LEVELS.items():
        item = (items, 2, rep, msg_t, ".fwskel.Metric") if sig == "metrics" else (items, 2, rep, bytes_t, "")
        message(f"{sig}Scope", [("scope", 1, opt, msg_t, ".fwskel.Scope"), item])
        message(
            f"{sig}Resource",
            [("resource", 1, opt, msg_t, ".fwskel.Resource"), (scopes, 2, rep, msg_t, f".fwskel.{sig}Scope")],
        )
        message(f"{sig}Request", [(res, 1, rep, msg_t, f".fwskel.{sig}Resource")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return {
        sig: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"fwskel.{sig}Request"))
        for sig in LEVELS
    }


def _decode(cls: type, signal: str, i: int, payload: bytes):
    try:
        return cls.FromString(payload)
    except DecodeError as e:
        raise BadPayload(f"payload #{i} is not a valid OTLP {MESSAGE[signal]}: {e}") from e


def check_decodable(signal: str, payloads: Sequence[bytes]) -> None:
    """Raise :class:`BadPayload` naming the first payload that does not fully decode."""
    for i, p in enumerate(payloads):
        _decode(REQUEST_CLASSES[signal], signal, i, p)


def _complex(kvs) -> bool:
    return any(kv.value.HasField("array_value") or kv.value.HasField("kvlist_value") for kv in kvs)


def survey(signal: str, payloads: Sequence[bytes]) -> tuple[dict[str, int], list[bool]]:
    """Rows each table of ``signal`` gets, and which requests must be rewritten in Python
    before ClickHouse reads them (:func:`~forewarn.collector.convert_anyvalue.prerender`):
    arrays/kvlists in resource or scope attributes, or a metric carrying more than one kind of
    data. Items are not decoded (kept as bytes)."""
    cls = _skeletons()[signal]
    res_field, scopes_field, items_field = LEVELS[signal]
    counts = dict.fromkeys(SIGNAL_TABLES[signal], 0)
    rewrite = []
    for i, p in enumerate(payloads):
        req = _decode(cls, signal, i, p)
        found = mixed = False
        mine = dict.fromkeys(counts, 0)
        for res in getattr(req, res_field):
            found = found or _complex(res.resource.attributes)
            for scope in getattr(res, scopes_field):
                found = found or _complex(scope.scope.attributes)
                if signal != "metrics":
                    mine[SIGNAL_TABLES[signal][0]] += len(getattr(scope, items_field))
                    continue
                for metric in scope.metrics:
                    kinds = [(t, k) for t, (k, _) in METRIC_KINDS.items() if metric.HasField(k)]
                    mixed = mixed or len(kinds) > 1
                    for table, kind in kinds:
                        mine[table] += len(getattr(metric, kind).data_points)
        if mixed:
            # The kinds are one oneof in OTLP: a metric sent with two (two Metric messages merged
            # on the wire) has only the last one, as upb, the receivers and the Collector read it;
            # ClickHouse would store both. Count the request as upb reads it, and rewrite it
            # (found by fuzz/otlp_protobuf.py's check that the conversion counts what the
            # receiver accepted).
            mine = _full_counts(signal, i, p)
        for table, n in mine.items():
            counts[table] += n
        rewrite.append(found or mixed)
    return counts, rewrite


def _full_counts(signal: str, i: int, payload: bytes) -> dict[str, int]:
    req = _decode(REQUEST_CLASSES[signal], signal, i, payload)
    out = dict.fromkeys(SIGNAL_TABLES[signal], 0)
    by_kind = {kind: table for table, (kind, _) in METRIC_KINDS.items()}
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind in by_kind:
                    out[by_kind[kind]] += len(getattr(m, kind).data_points)
    return out


def count_rows(signal: str, payloads: Sequence[bytes]) -> dict[str, int]:
    """Rows each table of ``signal`` gets from these requests."""
    return survey(signal, payloads)[0]
