"""Decoding and validating OTLP export requests, protobuf or OTLP/JSON, into the bytes the exporter stores.

The common path costs one upb parse plus a cheap per-item check: when nothing is rejected the
client's original protobuf bytes go to the exporter untouched. Only a request with rejected items
(spans with malformed ids, metrics without data) is rewritten and re-serialized.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> req = ExportTraceServiceRequest()
>>> spans = req.resource_spans.add().scope_spans.add().spans
>>> _ = spans.add(trace_id=b"t" * 16, span_id=b"s" * 8, name="ok")
>>> _ = spans.add(trace_id=b"short", span_id=b"s" * 8, name="bad")
>>> d = decode_protobuf("traces", req.SerializeToString())
>>> (d.items, d.rejected, d.error_message)
(1, 1, 'span "bad": trace_id must be 16 bytes, got 5')
>>> d = decode_json("traces", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "kind": 2, "startTimeUnixNano": "1544712660000000000", "unknownField": 1}]}]}]}')
>>> (d.items, d.rejected)
(1, 0)
>>> ExportTraceServiceRequest.FromString(d.payload).resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
'5b8efff798038103d269b633813fc60c'
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb


@dataclass(frozen=True)
class SignalSpec:
    """What one OTLP signal looks like on the wire: its messages, gRPC service and HTTP path."""

    name: str
    request: type[Message]
    response: type[Message]
    grpc_service: str
    http_path: str
    rejected_field: str  # the partial_success counter


SPECS: dict[str, SignalSpec] = {
    "traces": SignalSpec(
        "traces",
        trace_pb.ExportTraceServiceRequest,
        trace_pb.ExportTraceServiceResponse,
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "/v1/traces",
        "rejected_spans",
    ),
    "metrics": SignalSpec(
        "metrics",
        metrics_pb.ExportMetricsServiceRequest,
        metrics_pb.ExportMetricsServiceResponse,
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        "/v1/metrics",
        "rejected_data_points",
    ),
    "logs": SignalSpec(
        "logs",
        logs_pb.ExportLogsServiceRequest,
        logs_pb.ExportLogsServiceResponse,
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "/v1/logs",
        "rejected_log_records",
    ),
}


class BadData(ValueError):
    """The request cannot be decoded or is invalid as a whole: a permanent failure (400 / INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Decoded:
    """A validated request: ``payload`` holds only accepted items, serialized as protobuf."""

    payload: bytes
    items: int  # accepted spans / data points / log records
    rejected: int = 0
    error_message: str = ""


TENANT_ATTRIBUTE = "forewarn.tenant"


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()  # no tenants configured: resource attributes are left as sent
Tenant = str | None | _Keep
_RESOURCES = {"traces": "resource_spans", "metrics": "resource_metrics", "logs": "resource_logs"}


def decode_protobuf(signal: str, raw: bytes, tenant: Tenant = KEEP) -> Decoded:
    """Parse a binary OTLP request once (upb), validate it, pass the original bytes on if all is well
    (``tenant``: see :func:`stamp_tenant`)."""
    try:
        msg = SPECS[signal].request.FromString(raw)
    except (DecodeError, RuntimeError) as e:
        raise BadData(f"cannot decode the {signal} request as protobuf: {e}") from None
    return _validate(signal, msg, raw, tenant)


def decode_json(signal: str, raw: bytes, tenant: Tenant = KEEP) -> Decoded:
    """Parse OTLP/JSON (hex ids, integer or named enums, 64-bit ints as strings or numbers, unknown
    fields ignored, camelCase or snake_case) into the protobuf message."""
    if not raw.strip():
        raw = b"{}"  # an empty body is the empty request, as it is for protobuf
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadData(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadData(f"OTLP/JSON request must be a JSON object, got {type(data).__name__}")
    _hex_ids_to_base64(data)
    try:
        msg = json_format.ParseDict(data, SPECS[signal].request(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise BadData(f"invalid OTLP/JSON {signal} request: {_clip(str(e))}") from None
    return _validate(signal, msg, None, tenant)


def _clip(text: str, keep: int = 400) -> str:
    """Bound an error message; nested parse errors carry their cause at the end, so keep both ends.

    >>> _clip("a" * 10 + "b" * 1000 + "cause", 40)[-20:]
    'bbbbbbbbbbbbbbbcause'
    """
    return text if len(text) <= keep else f"{text[: keep // 4]} ... {text[-(keep - keep // 4) :]}"


_ID_KEYS = frozenset(("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"))


def _hex_ids_to_base64(root: dict[str, Any]) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64 for bytes. Rewrite in place.

    Only these id keys are bytes fields in OTLP, and attribute keys never appear as JSON object
    keys (attributes are ``{"key": ..., "value": ...}`` lists), so a walk over every object is exact.
    """
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _ID_KEYS and isinstance(v, str):
                    try:
                        node[k] = base64.b64encode(bytes.fromhex(v)).decode()
                    except ValueError:
                        raise BadData(f"{k} must be a hex string, got {v[:40]!r}") from None
                elif isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(x for x in node if isinstance(x, dict | list))


def _validate(signal: str, msg: Message, raw: bytes | None, tenant: Tenant = KEEP) -> Decoded:
    if signal == "traces":
        items, rejected, error = _check_spans(msg)
    elif signal == "metrics":
        items, rejected, error = _check_metrics(msg)
    else:
        items, rejected, error = _count_logs(msg), 0, ""
    stamped = tenant is not KEEP and stamp_tenant(signal, msg, tenant)
    if raw is None or rejected or stamped:
        raw = msg.SerializeToString()
    return Decoded(raw, items, rejected, error)


def stamp_tenant(signal: str, msg: Message, tenant: str | None) -> bool:
    """Set the ``forewarn.tenant`` resource attribute of every resource to ``tenant`` (the tenant
    of the request's bearer token), or remove it (None: a token without a tenant), so a client can
    never claim another tenant. Whether the message changed.

    >>> from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    >>> req = ExportLogsServiceRequest()
    >>> req.resource_logs.add().resource.attributes.add(key="forewarn.tenant").value.string_value = "b"
    >>> stamp_tenant("logs", req, "a"), [(kv.key, kv.value.string_value) for kv in req.resource_logs[0].resource.attributes]
    (True, [('forewarn.tenant', 'a')])
    >>> stamp_tenant("logs", req, None), len(req.resource_logs[0].resource.attributes)
    (True, 0)
    """
    changed = False
    for res in getattr(msg, _RESOURCES[signal]):
        attrs = res.resource.attributes
        for i in reversed(range(len(attrs))):
            if attrs[i].key == TENANT_ATTRIBUTE:
                del attrs[i]
                changed = True
        if tenant is not None:
            attrs.add(key=TENANT_ATTRIBUTE).value.string_value = tenant
            changed = True
    return changed


_ZERO_TRACE_ID, _ZERO_SPAN_ID = bytes(16), bytes(8)


def _span_id_problem(sp: Any) -> str:
    """Why a span's ids are invalid (trace.proto: wrong length or all zeroes), or ""."""
    tid, sid = sp.trace_id, sp.span_id
    if len(tid) != 16:
        return f"trace_id must be 16 bytes, got {len(tid)}"
    if len(sid) != 8:
        return f"span_id must be 8 bytes, got {len(sid)}"
    if tid == _ZERO_TRACE_ID:
        return "trace_id is all zeroes"
    if sid == _ZERO_SPAN_ID:
        return "span_id is all zeroes"
    return ""


def _check_spans(msg: Any) -> tuple[int, int, str]:
    items = rejected = 0
    error = ""
    zt, zs = _ZERO_TRACE_ID, _ZERO_SPAN_ID
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            spans = ss.spans
            bad: list[int] = []
            for i, sp in enumerate(spans):
                tid, sid = sp.trace_id, sp.span_id
                if len(tid) != 16 or len(sid) != 8 or tid == zt or sid == zs:
                    bad.append(i)
            if not bad:
                items += len(spans)
                continue
            if not error:
                sp = spans[bad[0]]
                error = f'span "{sp.name}": {_span_id_problem(sp)}'
            for i in reversed(bad):
                del spans[i]
            items += len(spans)
            rejected += len(bad)
    return items, rejected, error


_POINT_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def _check_metrics(msg: Any) -> tuple[int, int, str]:
    """A metric without data (or of a type this receiver does not know) is rejected, counting as one
    point; histogram points whose bucket counts do not match their bounds are rejected one by one."""
    items = rejected = 0
    error = ""
    for rm in msg.resource_metrics:
        for sm in rm.scope_metrics:
            metrics = sm.metrics
            drop: list[int] = []
            for i, m in enumerate(metrics):
                kind = m.WhichOneof("data")
                if kind not in _POINT_KINDS:
                    drop.append(i)
                    rejected += 1
                    error = error or f'metric "{m.name}" has no data points of a known type'
                    continue
                points = getattr(m, kind).data_points
                if kind == "histogram":
                    bad = [
                        j
                        for j, p in enumerate(points)
                        if len(p.bucket_counts) and len(p.bucket_counts) != len(p.explicit_bounds) + 1
                    ]
                    if bad:
                        p = points[bad[0]]
                        error = error or (
                            f'metric "{m.name}": histogram point has'
                            f" {len(p.bucket_counts)} bucket counts "
                            f"for {len(p.explicit_bounds)} explicit bounds"
                        )
                        for j in reversed(bad):
                            del points[j]
                        rejected += len(bad)
                items += len(points)
            for i in reversed(drop):
                del metrics[i]
    return items, rejected, error


def _count_logs(msg: Any) -> int:
    # Invalid trace/span ids on logs are not rejected: the conversion treats them as absent (logs.proto).
    return sum(len(sl.log_records) for rl in msg.resource_logs for sl in rl.scope_logs)


def export_response(signal: str, rejected: int = 0, error_message: str = "") -> Message:
    """The Export*ServiceResponse; ``partial_success`` is set only when something was rejected."""
    resp = SPECS[signal].response()
    if rejected:
        setattr(resp.partial_success, SPECS[signal].rejected_field, rejected)
        resp.partial_success.error_message = error_message
    return resp


def to_json(msg: Message) -> bytes:
    """OTLP/JSON of a response message (camelCase names)."""
    return json_format.MessageToJson(msg, indent=None).encode()
