"""The Kafka record format shared by the exporter and the ingester (OTel Collector conventions).

A record is one OTLP ``Export*ServiceRequest``: serialized protobuf (``otlp_proto``) or OTLP/JSON
(``otlp_json``, ids as hex, enums as integers). Keys only steer partitioning: a trace id as 32
lowercase hex characters, or a 16-byte hash of a resource's sorted attributes. Reading a record
goes through the receivers' own decoding and validation (``forewarn.collector.otlp``), so a
record is held to the same rules as a request on the OTLP port.

>>> req = ExportTraceServiceRequest()
>>> span = req.resource_spans.add().scope_spans.add().spans.add(name="GET /", trace_id=bytes(range(16)))
>>> span.span_id = bytes(range(1, 9))
>>> wire = encode("traces", req.SerializeToString(), "otlp_json")
>>> b'"traceId":"000102030405060708090a0b0c0d0e0f"' in wire
True
>>> ExportTraceServiceRequest.FromString(decode("traces", wire).payload) == req
True
>>> sarama_partition(b"foobar", 7)  # FNV-1a 32 of b"foobar" is 0xbf9cf968, negative as int32
4
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from forewarn.collector.otlp import SPECS, BadData, Decoded, decode_json, decode_protobuf
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ENCODINGS = ("otlp_proto", "otlp_json")
# OTLP/JSON writes these bytes fields as hex, where ProtoJSON would use base64.
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})
RecordError = BadData  # a record that is not a valid request of its topic's signal: a poison record


def _ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (base64.b64decode(v).hex() if k in _ID_FIELDS and isinstance(v, str) else _ids_to_hex(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ids_to_hex(v) for v in node]
    return node


def encode(signal: str, payload: bytes, encoding: str) -> bytes:
    """A record value for one serialized request in the configured encoding."""
    if encoding == "otlp_proto":
        return payload
    if encoding != "otlp_json":
        raise ValueError(f"unknown Kafka encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    msg = SPECS[signal].request.FromString(payload)
    return orjson.dumps(_ids_to_hex(json_format.MessageToDict(msg, use_integers_for_enums=True)))


def decode(signal: str, value: bytes | None) -> Decoded:
    """The validated request in a record; raises RecordError.

    ``{`` never starts these protobuf messages (it would be field 15 as a group), so it marks JSON.
    A protobuf request starts with 0x0a, which is also a newline: JSON after whitespace is tried
    only when the protobuf parse fails.
    """
    value = value or b""
    if value[:1] == b"{":
        return decode_json(signal, value)
    try:
        return decode_protobuf(signal, value)
    except BadData:
        if value.lstrip()[:1] == b"{":
            return decode_json(signal, value)
        raise


def split_by_trace(payload: bytes) -> list[tuple[bytes, bytes]]:
    """(key, request) per trace id, keeping each span's resource and scope (partition_traces_by_id)."""
    req = ExportTraceServiceRequest.FromString(payload)
    out: dict[bytes, ExportTraceServiceRequest] = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                part = out.setdefault(span.trace_id, ExportTraceServiceRequest())
                if not part.resource_spans or part.resource_spans[-1].resource != rs.resource:
                    prs = part.resource_spans.add(resource=rs.resource, schema_url=rs.schema_url)
                else:
                    prs = part.resource_spans[-1]
                if not prs.scope_spans or prs.scope_spans[-1].scope != ss.scope:
                    pss = prs.scope_spans.add(scope=ss.scope, schema_url=ss.schema_url)
                else:
                    pss = prs.scope_spans[-1]
                pss.spans.append(span)
    return [(tid.hex().encode(), r.SerializeToString()) for tid, r in out.items()]


def resource_key(attributes: Any) -> bytes:
    """16-byte hash of sorted resource attributes. Stable here, but not byte-identical to pdatautil.MapHash."""
    items = sorted((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in attributes)
    h = hashlib.blake2b(digest_size=16)
    for k, v in items:
        h.update(len(k).to_bytes(4, "big") + k.encode() + len(v).to_bytes(4, "big") + v)
    return h.digest()


def split_by_resource(signal: str, payload: bytes) -> list[tuple[bytes, bytes]]:
    """(key, request) per resource (partition_metrics/logs_by_resource_attributes)."""
    cls = SPECS[signal].request
    req = cls.FromString(payload)
    field = "resource_metrics" if signal == "metrics" else "resource_logs"
    out: list[tuple[bytes, bytes]] = []
    for res in getattr(req, field):
        part = cls()
        getattr(part, field).append(res)
        out.append((resource_key(res.resource.attributes), part.SerializeToString()))
    return out


def fnv1a_32(data: bytes) -> int:
    """FNV-1a 32-bit, the hash behind Sarama's default partitioner.

    >>> hex(fnv1a_32(b"")), hex(fnv1a_32(b"a"))
    ('0x811c9dc5', '0xe40c292c')
    """
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def sarama_partition(key: bytes, partitions: int) -> int:
    """The partition Sarama's hash partitioner picks: int32(fnv1a) % n, sign dropped."""
    h = fnv1a_32(key)
    signed = h - (1 << 32) if h & 0x80000000 else h
    p = abs(signed) % partitions  # Go's % keeps the dividend's sign; abs() after it is the same
    return p
