"""OTLP ``AnyValue`` to text exactly as the Collector's pdata ``Value.AsString()`` writes it.

The ClickHouse exporter stores every attribute value and every log body through
``pcommon.Value.AsString()``: strings as is, bools ``true``/``false``, ints in decimal, doubles in
ES6 number style (Go ``float64AsString``), bytes as standard base64, arrays and kvlists as JSON
(``encoding/json`` without HTML escaping; map keys sorted, the last duplicate key wins).
ClickHouse renders the scalar cases in SQL; arrays and kvlists (recursive, which a ClickHouse
protobuf schema cannot express) are rendered here, by :func:`prerender`, which swaps each such
value for a string value holding its rendering before ClickHouse reads the request.

>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
>>> as_string(AnyValue(double_value=1e21)), as_string(AnyValue(double_value=0.000001))
('1e+21', '0.000001')
>>> as_string(AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="a")])))
'[1,"a"]'
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from decimal import Decimal

from forewarn.collector.otlp_schema import LEVELS
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

COMPLEX = ("array_value", "kvlist_value")


class BadPayload(ValueError):
    """A payload is not a decodable OTLP export request: permanent, retrying cannot help."""


class _Unsupported(ValueError):
    """A NaN or infinite double inside an array/kvlist: Go's json.Marshal fails, AsString gives ""."""


def go_float(f: float) -> str:
    """Go's ``float64AsString``: fixed notation in [1e-6, 1e21), else shortest exponent form.

    >>> [go_float(x) for x in (0.0, 1.5, 1e20, 1.234e-7, 123456789012345678.0, float("nan"))]
    ['0', '1.5', '100000000000000000000', '1.234e-7', '123456789012345680', 'json: unsupported value: NaN']
    """
    if math.isnan(f):
        return "json: unsupported value: NaN"
    if math.isinf(f):
        return "json: unsupported value: +Inf" if f > 0 else "json: unsupported value: -Inf"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        ds = "".join(map(str, digits))
        e = int(exp) + len(ds) - 1
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{'-' if sign else ''}{mant}e" + (f"+{e:02d}" if e >= 0 else f"-{-e}")
    return format(Decimal(repr(f)).normalize(), "f")


def _json_str(s: str) -> str:
    # Python's escaping equals Go's for valid UTF-8 except U+2028/U+2029, which Go escapes.
    return json.dumps(s, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json(v: AnyValue) -> str:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return _json_str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        if not math.isfinite(v.double_value):
            raise _Unsupported
        return go_float(v.double_value)
    if kind == "bytes_value":
        return '"' + base64.b64encode(v.bytes_value).decode() + '"'
    if kind == "array_value":
        return "[" + ",".join(_json(x) for x in v.array_value.values) + "]"
    if kind == "kvlist_value":
        last = {kv.key: kv.value for kv in v.kvlist_value.values}
        return "{" + ",".join(f"{_json_str(k)}:{_json(last[k])}" for k in sorted(last)) + "}"
    return "null"


def as_string(v: AnyValue) -> str:
    """pdata ``Value.AsString()`` of one OTLP AnyValue."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return go_float(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind in COMPLEX:
        try:
            return _json(v)
        except _Unsupported:
            return ""
    return ""


def _flatten_value(v: AnyValue) -> None:
    if v.WhichOneof("value") in COMPLEX:
        v.string_value = as_string(v)  # setting a oneof member clears the others


def _flatten(kvs: Iterable[KeyValue]) -> None:
    for kv in kvs:
        _flatten_value(kv.value)


REQUEST_CLASSES = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}


def _flatten_item(signal: str, item) -> None:
    if signal == "traces":
        _flatten(item.attributes)
        for ev in item.events:
            _flatten(ev.attributes)
        for link in item.links:
            _flatten(link.attributes)
    elif signal == "logs":
        _flatten(item.attributes)
        _flatten_value(item.body)
    else:
        kind = item.WhichOneof("data")
        for dp in getattr(item, kind).data_points if kind else ():
            _flatten(dp.attributes)
            for ex in getattr(dp, "exemplars", ()):
                _flatten(ex.filtered_attributes)


def prerender(signal: str, payload: bytes, items: bool = True) -> bytes:
    """The request with every array/kvlist value replaced by a string value of its rendering.

    Scalars are untouched, and a string value is stored as is, so the stored text is unchanged.
    With ``items=False`` only resource and scope attributes are visited: a few values per
    request, where SDKs put arrays such as ``process.command_args``; the per-item walk is the
    slow part.
    """
    if signal not in REQUEST_CLASSES:
        raise ValueError(f"unknown signal {signal!r}")
    res_field, scopes_field, items_field = LEVELS[signal]
    try:
        req = REQUEST_CLASSES[signal].FromString(payload)
    except DecodeError as e:
        # The survey reads items as bytes, so it passes requests whose items do not decode;
        # that is bad input, not a storage failure to retry (found by fuzz/convert.py).
        raise BadPayload(f"not a valid OTLP {signal} export request: {e}") from None
    for r in getattr(req, res_field):
        _flatten(r.resource.attributes)
        for sc in getattr(r, scopes_field):
            _flatten(sc.scope.attributes)
            if items:
                for item in getattr(sc, items_field):
                    _flatten_item(signal, item)
    return req.SerializeToString()
