"""The ``INSERT ... SELECT`` statements that flatten OTLP requests into the exporter tables.

ClickHouse reads the length-delimited requests with the :mod:`otlp_schema` structure and
flattens resource → scope → item with nested ``ARRAY JOIN``s; attributes become maps with
``mapFromArrays``. Resource-level columns are computed once per resource, before the item join.
A request still holding an array/kvlist value (which SQL here does not render) stops the statement
with :data:`COMPLEX_MARKER`; the caller makes that happen before anything is written (one block
per statement), pre-renders such values in Python and re-runs the statement.

>>> sql = select_sql("traces", "otel_traces", "SRC")
>>> sql.startswith("WITH") and "ARRAY JOIN" in sql and "FROM SRC" in sql
True
>>> all(select_sql("metrics", table, "SRC") for table in METRIC_KINDS)
True
"""

from __future__ import annotations

from forewarn.collector.otlp_schema import LEVELS, METRIC_KINDS

from forewarn.storage.schema import TABLES

COMPLEX_MARKER = "FOREWARN_COMPLEX_ANYVALUE"
_KIND_NAMES = "['Unspecified','Internal','Server','Client','Producer','Consumer']"
_STATUS_NAMES = "['Unset','Ok','Error']"


def t(expr: str, *names: str) -> str:
    """Named tuple element access, chained: ``t('a', 'b', 'c')`` is ``a.b.c``."""
    for n in names:
        expr = f"tupleElement({expr}, '{n}')"
    return expr


def go_float(x: str) -> str:
    """Go's float64AsString. ClickHouse writes the same shortest digits and switches to exponent
    form at the same bounds (1e-6, 1e21); only a positive exponent lacks Go's '+'."""
    return (
        f"if(isFinite({x}), if(abs({x}) >= 1e21, replaceOne(toString({x}), 'e', 'e+'), toString({x})), "
        f"if(isNaN({x}), 'json: unsupported value: NaN', "
        f"if({x} > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf')))"
    )


_RENDER = (
    "(k, s, i, b, d, y) -> multiIf(k = 'string', s, k = 'int', toString(i), "
    "k = 'bool', if(b, 'true', 'false'), k = 'double', {float}, k = 'bytes', base64Encode(y), "
    "k = 'none', '', toString(throwIf(k IN ('array', 'kvlist'), '{marker}')))"
)


def _render_lambda() -> str:
    """pcommon ``AsString`` of a scalar AnyValue given its parts; an array/kvlist raises
    COMPLEX_MARKER. ``multiIf`` evaluates a branch only for the rows taking it, so the throw
    costs nothing unless such a value is there."""
    return _RENDER.format(float=go_float("d"), marker=COMPLEX_MARKER)


_PARTS = ("value", "string_value", "int_value", "bool_value", "double_value", "bytes_value")


# The statement defines the lambda once (``WITH ... AS``) and every map refers to it by name:
# a shorter statement to parse, which is part of each statement's fixed cost.
RENDER = "fw_render"


def any_str(v: str) -> str:
    """Text of one AnyValue tuple (a log body)."""
    args = ", ".join(f"[{t(v, p)}]" for p in _PARTS)
    return f"arrayMap({RENDER}, {args})[1]"


def attr_map(kvs: str) -> str:
    """Attribute map of an ``Array(Tuple(key, value))``: the value parts are read as parallel
    arrays (sub-columns), which keeps the expression small: analysis time is per statement."""
    vals = t(kvs, "value")
    args = ", ".join(t(vals, p) for p in _PARTS)
    return f"mapFromArrays({t(kvs, 'key')}, arrayMap({RENDER}, {args}))"


def hex_id(x: str, size: int) -> str:
    """Lowercase hex of a trace/span id; empty when absent, all-zero or of the wrong length."""
    return f"if(length({x}) = {size} AND {x} != repeat(char(0), {size}), lower(hex({x})), '')"


def ts(x: str) -> str:
    return f"fromUnixTimestamp64Nano(reinterpretAsInt64({x}))"


IT = "it"  # the row-level item: a span, a log record or a metric data point


def _trace_columns() -> dict[str, str]:
    ev, ln = t(IT, "events"), t(IT, "links")
    return {
        "Timestamp": ts(t(IT, "start_time_unix_nano")),
        "TraceId": hex_id(t(IT, "trace_id"), 16),
        "SpanId": hex_id(t(IT, "span_id"), 8),
        "ParentSpanId": hex_id(t(IT, "parent_span_id"), 8),
        "TraceState": t(IT, "trace_state"),
        "SpanName": t(IT, "name"),
        "SpanKind": f"if({t(IT, 'kind')} BETWEEN 0 AND 5, {_KIND_NAMES}[{t(IT, 'kind')} + 1], '')",
        "ServiceName": "res_attrs['service.name']",
        "ResourceAttributes": "res_attrs",
        "ScopeName": t("ss", "scope", "name"),
        "ScopeVersion": t("ss", "scope", "version"),
        "SpanAttributes": attr_map(t(IT, "attributes")),
        "Duration": f"{t(IT, 'end_time_unix_nano')} - {t(IT, 'start_time_unix_nano')}",
        "StatusCode": f"if({t(IT, 'status', 'code')} BETWEEN 0 AND 2, "
        f"{_STATUS_NAMES}[{t(IT, 'status', 'code')} + 1], '')",
        "StatusMessage": t(IT, "status", "message"),
        "Events.Timestamp": f"arrayMap(e -> {ts(t('e', 'time_unix_nano'))}, {ev})",
        "Events.Name": f"arrayMap(e -> {t('e', 'name')}, {ev})",
        "Events.Attributes": f"arrayMap(e -> {attr_map(t('e', 'attributes'))}, {ev})",
        "Links.TraceId": f"arrayMap(l -> {hex_id(t('l', 'trace_id'), 16)}, {ln})",
        "Links.SpanId": f"arrayMap(l -> {hex_id(t('l', 'span_id'), 8)}, {ln})",
        "Links.TraceState": f"arrayMap(l -> {t('l', 'trace_state')}, {ln})",
        "Links.Attributes": f"arrayMap(l -> {attr_map(t('l', 'attributes'))}, {ln})",
    }


def _scope_columns() -> dict[str, str]:
    return {
        "ResourceAttributes": "res_attrs",
        "ResourceSchemaUrl": t("rs", "schema_url"),
        "ServiceName": "res_attrs['service.name']",
        "ScopeName": t("ss", "scope", "name"),
        "ScopeVersion": t("ss", "scope", "version"),
        "ScopeAttributes": "scope_attrs",
        "ScopeDroppedAttrCount": t("ss", "scope", "dropped_attributes_count"),
        "ScopeSchemaUrl": t("ss", "schema_url"),
    }


def _log_columns() -> dict[str, str]:
    time_ns, observed = t(IT, "time_unix_nano"), t(IT, "observed_time_unix_nano")
    return {
        **_scope_columns(),
        "Timestamp": ts(f"if({time_ns} != 0, {time_ns}, {observed})"),
        "TraceId": hex_id(t(IT, "trace_id"), 16),
        "SpanId": hex_id(t(IT, "span_id"), 8),
        "TraceFlags": f"bitAnd({t(IT, 'flags')}, 255)",
        "SeverityText": t(IT, "severity_text"),
        "SeverityNumber": f"bitAnd({t(IT, 'severity_number')}, 255)",
        "Body": any_str(t(IT, "body")),
        "LogAttributes": attr_map(t(IT, "attributes")),
        "EventName": t(IT, "event_name"),
    }


def _number(x: str) -> str:
    """A NumberDataPoint/Exemplar value as Float64: as_int converted, absent as 0."""
    return f"multiIf({t(x, 'value')} = 'as_int', toFloat64({t(x, 'as_int')}), {t(x, 'value')} = 'as_double', {t(x, 'as_double')}, 0.)"


def _exemplar_id(x: str, size: int) -> str:
    # The exporter hex-encodes the fixed-size id array: an absent id is all zeros, not empty.
    return f"if(length({x}) = {size}, lower(hex({x})), repeat('0', {2 * size}))"


def _metric_columns(kind: str) -> dict[str, str]:
    ex = t(IT, "exemplars")
    cols = {
        **_scope_columns(),
        "MetricName": t("m", "name"),
        "MetricDescription": t("m", "description"),
        "MetricUnit": t("m", "unit"),
        "Attributes": attr_map(t(IT, "attributes")),
        "StartTimeUnix": ts(t(IT, "start_time_unix_nano")),
        "TimeUnix": ts(t(IT, "time_unix_nano")),
        "Flags": t(IT, "flags"),
    }
    if kind != "summary":
        cols |= {
            "Exemplars.FilteredAttributes": f"arrayMap(x -> {attr_map(t('x', 'filtered_attributes'))}, {ex})",
            "Exemplars.TimeUnix": f"arrayMap(x -> {ts(t('x', 'time_unix_nano'))}, {ex})",
            "Exemplars.Value": f"arrayMap(x -> {_number('x')}, {ex})",
            "Exemplars.SpanId": f"arrayMap(x -> {_exemplar_id(t('x', 'span_id'), 8)}, {ex})",
            "Exemplars.TraceId": f"arrayMap(x -> {_exemplar_id(t('x', 'trace_id'), 16)}, {ex})",
        }
    if kind in ("gauge", "sum"):
        cols["Value"] = _number(IT)
    else:
        cols |= {"Count": t(IT, "count"), "Sum": t(IT, "sum")}
    if kind in ("sum", "histogram", "exponential_histogram"):
        cols["AggregationTemporality"] = t("m", kind, "aggregation_temporality")
    if kind in ("histogram", "exponential_histogram"):
        cols |= {"Min": t(IT, "min"), "Max": t(IT, "max")}
    if kind == "sum":
        cols["IsMonotonic"] = t("m", kind, "is_monotonic")
    elif kind == "histogram":
        cols |= {"BucketCounts": t(IT, "bucket_counts"), "ExplicitBounds": t(IT, "explicit_bounds")}
    elif kind == "exponential_histogram":
        cols |= {
            "Scale": t(IT, "scale"),
            "ZeroCount": t(IT, "zero_count"),
            "PositiveOffset": t(IT, "positive", "offset"),
            "PositiveBucketCounts": t(IT, "positive", "bucket_counts"),
            "NegativeOffset": t(IT, "negative", "offset"),
            "NegativeBucketCounts": t(IT, "negative", "bucket_counts"),
        }
    elif kind == "summary":
        q = t(IT, "quantile_values")
        cols |= {
            "ValueAtQuantiles.Quantile": f"arrayMap(v -> {t('v', 'quantile')}, {q})",
            "ValueAtQuantiles.Value": f"arrayMap(v -> {t('v', 'value')}, {q})",
        }
    return cols


def _spec(signal: str, table: str) -> tuple[dict[str, str], str]:
    """Columns, and the ARRAY JOIN from a scope (``ss``) down to the row-level item."""
    items = LEVELS[signal][2]
    if signal == "traces":
        return _trace_columns(), f"ARRAY JOIN {t('ss', items)} AS {IT}"
    if signal == "logs":
        return _log_columns(), f"ARRAY JOIN {t('ss', items)} AS {IT}"
    kind = METRIC_KINDS[table][0]
    join = f"ARRAY JOIN {t('ss', items)} AS m ARRAY JOIN {t('m', kind, 'data_points')} AS {IT}"
    return _metric_columns(kind), join


def target_columns(table: str) -> list[str]:
    """The contract columns of ``table``, Nested ones expanded to their dotted sub-columns."""
    out = []
    for name, typ in TABLES[table].columns:
        if typ.startswith("Nested("):
            inner = typ[len("Nested(") : typ.rindex(")")]
            depth, start = 0, 0
            for i, ch in enumerate(inner + ","):
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                elif ch == "," and depth == 0:
                    out.append(f"{name}.{inner[start:i].strip().split()[0]}")
                    start = i + 1
        else:
            out.append(name)
    return out


def select_sql(signal: str, table: str, source: str, extra: tuple[str, ...] = ()) -> str:
    """The SELECT producing ``table``'s rows (in :func:`target_columns` order, then ``extra``
    expressions) from ``source``.

    Resource and scope attribute maps are built as ``ARRAY JOIN`` arguments, so once per
    resource/scope: an expression merely selected from an outer level would be evaluated after
    the joins, once per row.
    """
    res_list, scopes, _ = LEVELS[signal]
    cols, item_join = _spec(signal, table)
    res_maps = f"arrayMap(r -> {attr_map(t('r', 'resource', 'attributes'))}, {res_list})"
    scope_list = t("rs", scopes)
    scope_join = f"ARRAY JOIN {scope_list} AS ss"
    if "ScopeAttributes" in cols:  # otel_traces has no such column: not rendered at all there
        scope_join += (
            f", arrayMap(s -> {attr_map(t('s', 'scope', 'attributes'))}, {scope_list}) AS scope_attrs"
        )
    projection = ",\n  ".join([*(f"{cols[name]} AS `{name}`" for name in target_columns(table)), *extra])
    return (
        f"WITH {_render_lambda()} AS {RENDER}\nSELECT\n  {projection}\nFROM {source}\n"
        f"ARRAY JOIN {res_list} AS rs, {res_maps} AS res_attrs\n{scope_join}\n{item_join}"
    )
